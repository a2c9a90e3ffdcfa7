use std::time::Duration;

use crate::{check_run, controller_bench};

#[tokio::test]
async fn small_run_on_three_raft_members_completes_every_phase() {
    let args = ["--quick", "--store", "raft3", "--replicas", "60", "--nodes", "6", "--seed", "7"];
    let output = controller_bench(&args, Duration::from_secs(300)).await;
    check_run(&output, "raft3", 60);
}
