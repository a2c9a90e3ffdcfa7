use std::time::Duration;

use crate::controller_bench;

#[tokio::test]
async fn a_phase_that_cannot_finish_fails_with_where_it_stood() {
    // One node takes at most 110 pods: 200 can never all run.
    let args = ["--quick", "--nodes", "1", "--timeout", "3", "--seed", "7"];
    let output = controller_bench(&args, Duration::from_secs(120)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the run should fail\n{stderr}");
    assert!(stderr.contains("phase create timed out after 3s"), "{stderr}");
    // The message says where the run stood: the scheduler found no node for some pods.
    let unplaced = stderr
        .split("unschedulable_cycles=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no scheduler figures in the error\n{stderr}"));
    assert!(unplaced > 0, "{stderr}");
}
