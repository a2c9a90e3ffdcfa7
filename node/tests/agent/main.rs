//! Node agent scenarios: a TestKit (in-memory registry, paused clock), a scriptable fake
//! runtime, and a real `NodeAgent` between them.

mod fake;
mod support;

mod t10_node;
mod t20_pods;
mod t30_restarts;
mod t40_images;
mod t50_deletion;
mod t60_adoption;
mod t70_hollow;
mod t80_volumes;
