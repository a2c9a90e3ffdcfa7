//! Where endpoints go among a Service's slices of one address type, with as few writes as
//! possible (Kubernetes' `reconcileByAddressType` and `reconcileByPortMapping`): endpoints
//! stay in the slice that holds them, changed ones are updated in place, new ones fill slices
//! already being written before an untouched slice is written or a new one created, and a
//! slice about to be deleted is reused rather than deleting one slice and creating another.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use super::{
    EndpointKey, Group, PortsKey, SlicePlan, desired_labels, endpoint_key, new_slice, owned_by, ports_key,
};
use crate::controllers::endpoints::pods::AddressType;

/// The plan for the slices of one address type. `existing` are the Service's managed slices
/// of that type, sorted by name.
pub(super) fn plan_address_type(
    service: &Service,
    desired: BTreeMap<PortsKey, Group>,
    existing: &[&EndpointSlice],
    address_type: AddressType,
    max: usize,
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let mut by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            by_ports.entry(ports_key(slice.ports.as_deref().unwrap_or(&[]))).or_default().push(slice);
        } else {
            // Left by an earlier Service of the same name.
            plan.delete.push((*slice).clone());
        }
    }
    for (key, group) in desired {
        let slices = by_ports.remove(&key).unwrap_or_default();
        plan.extend(place(service, &slices, group, address_type, max));
    }
    // Slices of port sets no longer wanted.
    plan.delete.extend(by_ports.into_values().flatten().cloned());

    // A Service with no endpoints of this type still has one empty slice, so that readers can
    // tell "no endpoints" from "not yet handled".
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(service, &[], address_type);
        match plan.delete.as_slice() {
            [only] if same_placeholder(only, &placeholder) => plan.delete.clear(),
            _ => plan.create.push(placeholder),
        }
    }
    reuse_deleted_slices(service, &mut plan);
    plan
}

/// Whether an existing slice already is the placeholder `wanted` would be.
fn same_placeholder(existing: &EndpointSlice, wanted: &EndpointSlice) -> bool {
    existing.endpoints.is_empty()
        && existing.ports.as_deref().unwrap_or(&[]).is_empty()
        && existing.address_type == wanted.address_type
        && existing.metadata.labels == wanted.metadata.labels
        && existing.metadata.owner_references == wanted.metadata.owner_references
}

/// Turns pairs of a create and a delete into one update of the slice to be deleted.
fn reuse_deleted_slices(service: &Service, plan: &mut SlicePlan) {
    while !plan.create.is_empty() {
        let Some(i) = plan.delete.iter().position(|d| owned_by(d, service)) else { break };
        let old = plan.delete.remove(i);
        let Some(mut slice) = plan.create.pop() else { break };
        slice.metadata.name = old.metadata.name;
        slice.metadata.generate_name = old.metadata.generate_name;
        slice.metadata.resource_version = old.metadata.resource_version;
        plan.update.push(slice);
    }
}

/// The plan for the slices of one port set.
fn place(
    service: &Service,
    existing: &[&EndpointSlice],
    group: Group,
    address_type: AddressType,
    max: usize,
) -> SlicePlan {
    let Group { ports, endpoints: mut desired } = group;
    let labels = desired_labels(service);
    let mut plan = SlicePlan::default();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();

    // 1. Keep each wanted endpoint where it is (updated if it changed); drop the others.
    for slice in existing {
        let mut kept: Vec<Endpoint> = Vec::with_capacity(slice.endpoints.len());
        let mut changed = false;
        for e in &slice.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(e)) {
                changed |= want != *e;
                kept.push(want);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                plan.delete.push((*slice).clone());
                continue;
            }
            let mut s = (*slice).clone();
            s.endpoints = kept;
            s.metadata.labels = Some(labels.clone());
            plan.update.push(s);
        } else if labels_changed {
            let mut s = (*slice).clone();
            s.metadata.labels = Some(labels.clone());
            plan.update.push(s);
        } else {
            unchanged.push((*slice).clone());
        }
    }

    // 2. New endpoints first fill the slices written anyway, fullest first.
    plan.update.sort_by(|a, b| {
        b.endpoints.len().cmp(&a.endpoints.len()).then(a.metadata.name.cmp(&b.metadata.name))
    });
    for s in &mut plan.update {
        fill(s, &mut desired, max);
    }

    // 3. What is left goes into the one untouched slice it fits best, or into new slices.
    while !desired.is_empty() {
        let reuse = (desired.len() < max).then(|| slice_to_fill(&unchanged, desired.len(), max)).flatten();
        match reuse {
            Some(i) => {
                let mut s = unchanged.remove(i);
                fill(&mut s, &mut desired, max);
                plan.update.push(s);
            }
            None => {
                let mut s = new_slice(service, &ports, address_type);
                fill(&mut s, &mut desired, max);
                plan.create.push(s);
            }
        }
    }
    plan
}

/// Moves endpoints from `desired` into `slice` until it is full.
fn fill(slice: &mut EndpointSlice, desired: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    while slice.endpoints.len() < max {
        let Some((_, e)) = desired.pop_first() else { break };
        slice.endpoints.push(e);
    }
}

/// The slice that `n` more endpoints would bring closest to full without overflowing it.
fn slice_to_fill(slices: &[EndpointSlice], n: usize, max: usize) -> Option<usize> {
    slices
        .iter()
        .enumerate()
        .filter(|(_, s)| s.endpoints.len() + n <= max)
        .min_by_key(|(i, s)| (max - (s.endpoints.len() + n), *i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice_of(n: usize) -> EndpointSlice {
        EndpointSlice { endpoints: vec![Endpoint::default(); n], ..Default::default() }
    }

    #[test]
    fn the_slice_to_fill_is_the_one_left_fullest() {
        let slices = [slice_of(10), slice_of(95), slice_of(90), slice_of(97)];
        assert_eq!(slice_to_fill(&slices, 5, 100), Some(1));
        assert_eq!(slice_to_fill(&slices, 4, 100), Some(1));
        assert_eq!(slice_to_fill(&slices, 3, 100), Some(3));
        assert_eq!(slice_to_fill(&slices, 91, 100), None);
    }
}
