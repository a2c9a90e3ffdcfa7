//! Scheduling decisions alone: the default profile placing pods one after another on a
//! snapshot of simulated nodes (each placement assumed into the snapshot, as the scheduler's
//! cache does). The shapes follow kube-scheduler's scheduler_perf SchedulingBasic: nodes with
//! 4 CPUs, 32 GiB and 110 pods; pods requesting 100m CPU and 500Mi. No store, no binding, no
//! queue: this measures the decision path only.
//!
//! `cargo run --release -p flotilla-benches --bin scheduler_bench -- --nodes 5000 --initial 1000 --pods 10000`

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::Parser;
use flotilla_core::scheduler::{Framework, Snapshot, plugins};
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    /// Simulated nodes.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods placed before measuring.
    #[arg(long, default_value_t = 1_000)]
    initial: usize,
    /// Pods measured.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Percentages of nodes to score to run, one after another; 0 is kube-scheduler's
    /// adaptive default.
    #[arg(long, value_delimiter = ',', default_value = "0,100")]
    percentage: Vec<u32>,
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

fn node(i: usize) -> Arc<Node> {
    let capacity = quantities(&[("cpu", "4"), ("memory", "32Gi"), ("pods", "110")]);
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(format!("node-{i}")),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), format!("node-{i}")),
                ("topology.kubernetes.io/zone".to_string(), format!("zone-{}", i % 3)),
            ])),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            ..Default::default()
        }),
    })
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i}")),
            namespace: Some("sched".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".into(),
                image: Some("pause:3".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", "100m"), ("memory", "500Mi")])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("nodes,initial,pods,percentage,secs,pods_per_sec,p50_us,p99_us");
    for &percentage in &args.percentage {
        run(&args, percentage)?;
    }
    Ok(())
}

fn run(args: &Args, percentage: u32) -> anyhow::Result<()> {
    let mut snapshot = Snapshot::new((0..args.nodes).map(node), Vec::<Arc<Pod>>::new())?;
    let mut framework = Framework::with_seed(plugins::default_profile(), 7);
    if percentage > 0 {
        framework = framework.with_percentage_of_nodes_to_score(percentage);
    }
    let place = |i: usize, snapshot: &mut Snapshot| -> anyhow::Result<()> {
        let p = pod(i);
        let placed = framework.schedule(snapshot, &p)?;
        snapshot.add_pod(&placed.node, Arc::new(p))?;
        Ok(())
    };
    for i in 0..args.initial {
        place(i, &mut snapshot)?;
    }
    let mut h = Histogram::<u64>::new(3)?;
    let start = Instant::now();
    for i in args.initial..args.initial + args.pods {
        let t = Instant::now();
        place(i, &mut snapshot)?;
        h.record(t.elapsed().as_micros() as u64)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{},{},{},{},{secs:.2},{:.0},{},{}",
        args.nodes,
        args.initial,
        args.pods,
        if percentage == 0 { "adaptive".to_string() } else { percentage.to_string() },
        args.pods as f64 / secs,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
    Ok(())
}
