use std::time::Duration;

use crate::{check_run, controller_bench, row};

#[tokio::test]
async fn quick_run_on_the_memory_store_completes_every_phase() {
    let output =
        controller_bench(&["--quick", "--seed", "7", "--progress", "1"], Duration::from_secs(300)).await;
    check_run(&output, "memory", 200);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("replicas=200 nodes=20"), "--quick picks its sizes\n{stdout}");
    // The pods were spread: more than one of the 20 nodes got some (the work table's last
    // column, counted from the list of pods).
    let work_row = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&"create") && cells.len() == 13)
        .unwrap_or_else(|| panic!("no create row in the work table\n{stdout}"));
    let nodes_used: usize = work_row[12].parse().expect("a count");
    assert!(nodes_used > 1 && nodes_used <= 20, "{stdout}");
    assert_eq!(row(&stdout, "create").len(), 12, "the phase table's row comes first\n{stdout}");
}
