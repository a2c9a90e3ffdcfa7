//! State-machine apply and range, without I/O.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_core::store::{Command, KeyRange, MvccState, PutRequest, RangeRequest, RequestOp, TxnRequest};

fn put(k: usize) -> Command {
    Command::Txn(TxnRequest {
        success: vec![RequestOp::Put(PutRequest::new(format!("/bench/{k:08}"), vec![b'x'; 256]))],
        ..Default::default()
    })
}

fn filled(n: usize) -> MvccState {
    let mut s = MvccState::new();
    for k in 0..n {
        let _ = s.apply(&put(k));
    }
    s
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 puts of 256 B onto 10k keys", |b| {
        b.iter_batched(
            || filled(10_000),
            |mut s| {
                for k in 0..1000 {
                    let _ = s.apply(&put(k * 7));
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn range(c: &mut Criterion) {
    let s = filled(10_000);
    let mut g = c.benchmark_group("range");
    g.bench_function("one key of 10k", |b| {
        b.iter(|| s.range(&RangeRequest::new(KeyRange::key("/bench/00005000"))).expect("valid"))
    });
    g.bench_function("prefix of 100 keys", |b| {
        b.iter(|| s.range(&RangeRequest::new(KeyRange::prefix("/bench/000051"))).expect("valid"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = apply, range
}
criterion_main!(benches);
