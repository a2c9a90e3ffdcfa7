//! The clients: read-modify-write loops with resourceVersion preconditions, and the final
//! reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::history::{CreateOp, FinalRead, ObjectRecorder, Outcome, ReadOp, UpdateOp, format_elements};
use super::{ObjectSpec, RUN_LABEL};

/// The data key holding an object's list.
pub(crate) const ELEMENTS_KEY: &str = "elements";
/// How far back a late watcher's start resourceVersion may be picked from.
const RECENT: Duration = Duration::from_secs(60);

/// State the clients and watchers share.
#[derive(Debug)]
pub(crate) struct Shared {
    prefix: String,
    /// Per slot, the index `k` of its current object; and every name used so far.
    slots: std::sync::Mutex<(Vec<u64>, Vec<String>)>,
    /// resourceVersions of `ok` updates, with when they were acknowledged.
    recent_ok: std::sync::Mutex<Vec<(Instant, String)>>,
    read_errors: AtomicU64,
}

impl Shared {
    pub(crate) fn new(prefix: &str, objects: usize) -> Self {
        let ks: Vec<u64> = (0..objects as u64).collect();
        let names = ks.iter().map(|k| object_name(prefix, *k)).collect();
        Shared {
            prefix: prefix.to_string(),
            slots: std::sync::Mutex::new((ks, names)),
            recent_ok: std::sync::Mutex::default(),
            read_errors: AtomicU64::new(0),
        }
    }

    /// The current object of `slot`.
    fn current(&self, slot: usize) -> String {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let k = slots.0.get(slot).copied().unwrap_or(0);
        object_name(&self.prefix, k)
    }

    /// Replaces `slot`'s object `name` by a fresh one (unless another client already did).
    pub(crate) fn rotate(&self, slot: usize, name: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let next = slots.1.len() as u64;
        let (ks, names) = &mut *slots;
        if let Some(k) = ks.get_mut(slot)
            && object_name(&self.prefix, *k) == name
        {
            *k = next;
            names.push(object_name(&self.prefix, next));
        }
    }

    /// Every object name used so far.
    pub(crate) fn names(&self) -> Vec<String> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    fn acknowledged(&self, rv: &str) {
        self.recent_ok.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), rv.to_string()));
    }

    /// A resourceVersion of an `ok` update from the last minute, picked with `rng`.
    pub(crate) fn recent_version(&self, rng: &mut StdRng) -> Option<String> {
        let recent = self.recent_ok.lock().unwrap_or_else(|p| p.into_inner());
        let since = Instant::now().checked_sub(RECENT);
        let first = recent.iter().position(|(at, _)| since.is_none_or(|s| *at >= s))?;
        let i = rng.random_range(first..recent.len());
        recent.get(i).map(|(_, rv)| rv.clone())
    }

    pub(crate) fn read_errors(&self) -> u64 {
        self.read_errors.load(Ordering::Relaxed)
    }
}

/// Object `k`'s name.
pub(crate) fn object_name(prefix: &str, k: u64) -> String {
    format!("{prefix}-{k}")
}

/// The outcome of a refused or failed write: 4xx (except 408) certainly did not apply, the
/// rest may have.
pub(crate) fn classify(e: &kube::Error) -> Outcome {
    match e {
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 408 => Outcome::Fail,
        _ => Outcome::Info,
    }
}

/// An object's list: `Ok` with the elements, or `Err` with the raw text that did not parse.
pub(crate) fn elements_of(cm: &ConfigMap) -> Result<Vec<u64>, String> {
    let raw = cm.data.as_ref().and_then(|d| d.get(ELEMENTS_KEY)).map(String::as_str).unwrap_or("");
    super::history::parse_elements(raw).map_err(|_| raw.to_string())
}

/// One client's loop.
pub(crate) struct ClientTask {
    first_process: u64,
    clients: u64,
    spec: ObjectSpec,
    prefix: String,
    api: Api<ConfigMap>,
    shared: Arc<Shared>,
    recorder: ObjectRecorder,
    rng: StdRng,
    /// Elements this client has appended (its next one is `sent * clients + c + 1`).
    sent: u64,
}

impl ClientTask {
    pub(crate) fn new(
        c: usize,
        spec: &ObjectSpec,
        api: Api<ConfigMap>,
        shared: &Arc<Shared>,
        recorder: &ObjectRecorder,
    ) -> Self {
        ClientTask {
            first_process: c as u64,
            clients: spec.clients as u64,
            spec: spec.clone(),
            prefix: shared.prefix.clone(),
            api,
            shared: shared.clone(),
            recorder: recorder.clone(),
            rng: StdRng::seed_from_u64(spec.seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            sent: 0,
        }
    }

    pub(crate) async fn run(mut self, until: Instant) {
        let mut process = self.first_process;
        while Instant::now() < until {
            let slot = self.rng.random_range(0..self.spec.objects);
            let (retire, erred) = self.step(process, slot).await;
            if retire {
                // The write may still be in flight: this process never issues another.
                process += self.clients;
            }
            let pause = if erred { self.spec.think.max(Duration::from_millis(100)) } else { self.spec.think };
            tokio::time::sleep(pause).await;
        }
    }

    /// One GET and, depending on it, a create or an update; whether the process is to be
    /// retired and whether something went wrong.
    async fn step(&mut self, process: u64, slot: usize) -> (bool, bool) {
        let name = self.shared.current(slot);
        let invoke_ns = self.recorder.now_ns();
        let got = match tokio::time::timeout(self.spec.op_timeout, self.api.get_opt(&name)).await {
            Ok(Ok(got)) => got,
            Ok(Err(_)) | Err(_) => {
                self.shared.read_errors.fetch_add(1, Ordering::Relaxed);
                return (false, true);
            }
        };
        let complete_ns = self.recorder.now_ns();
        let Some(mut cm) = got else {
            self.recorder.read(ReadOp {
                process,
                object: name.clone(),
                found: false,
                elements: Vec::new(),
                rv: None,
                malformed: None,
                invoke_ns,
                complete_ns,
            });
            return self.create(process, &name).await;
        };
        let rv = cm.metadata.resource_version.clone().unwrap_or_default();
        let parsed = elements_of(&cm);
        self.recorder.read(ReadOp {
            process,
            object: name.clone(),
            found: true,
            elements: parsed.clone().unwrap_or_default(),
            rv: Some(rv.clone()),
            malformed: parsed.as_ref().err().cloned(),
            invoke_ns,
            complete_ns,
        });
        let Ok(mut elements) = parsed else { return (false, true) };
        if elements.len() >= self.spec.max_elements {
            self.shared.rotate(slot, &name);
            return (false, false);
        }
        self.sent += 1;
        let element = self.sent * self.clients + self.first_process + 1;
        elements.push(element);
        cm.data
            .get_or_insert_with(BTreeMap::new)
            .insert(ELEMENTS_KEY.to_string(), format_elements(&elements));
        let invoke_ns = self.recorder.now_ns();
        let params = PostParams::default();
        let put = self.api.replace(&name, &params, &cm);
        let (outcome, new_rv, error) = match tokio::time::timeout(self.spec.op_timeout, put).await {
            Ok(Ok(written)) => (Outcome::Ok, written.metadata.resource_version, None),
            Ok(Err(e)) => (classify(&e), None, Some(e.to_string())),
            Err(_) => (Outcome::Info, None, Some(format!("timed out after {:?}", self.spec.op_timeout))),
        };
        if let Some(rv) = &new_rv {
            self.shared.acknowledged(rv);
        }
        let erred = outcome == Outcome::Info;
        self.recorder.update(UpdateOp {
            process,
            object: name,
            element,
            elements,
            read_rv: rv,
            outcome,
            rv: new_rv,
            error,
            invoke_ns,
            complete_ns: self.recorder.now_ns(),
        });
        (erred, erred)
    }

    /// Creates `name` with an empty list.
    async fn create(&mut self, process: u64, name: &str) -> (bool, bool) {
        let labels = BTreeMap::from([(RUN_LABEL.to_string(), self.prefix.clone())]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(ELEMENTS_KEY.to_string(), String::new())])),
            ..ConfigMap::default()
        };
        let invoke_ns = self.recorder.now_ns();
        let params = PostParams::default();
        let sent = self.api.create(&params, &cm);
        let (outcome, rv, error) = match tokio::time::timeout(self.spec.op_timeout, sent).await {
            Ok(Ok(created)) => (Outcome::Ok, created.metadata.resource_version, None),
            Ok(Err(e)) => (classify(&e), None, Some(e.to_string())),
            Err(_) => (Outcome::Info, None, Some(format!("timed out after {:?}", self.spec.op_timeout))),
        };
        let info = outcome == Outcome::Info;
        self.recorder.create(CreateOp {
            process,
            object: name.to_string(),
            outcome,
            rv,
            error,
            invoke_ns,
            complete_ns: self.recorder.now_ns(),
        });
        (info, info)
    }
}

/// One final GET of `name`, asking the members in turn until one answers or `deadline`.
async fn final_read(
    apis: &[Api<ConfigMap>],
    name: &str,
    op_timeout: Duration,
    deadline: Instant,
    recorder: &ObjectRecorder,
) -> FinalRead {
    let mut error = "no attempt before the deadline".to_string();
    for (i, api) in apis.iter().enumerate().cycle() {
        if Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout(op_timeout, api.get_opt(name)).await {
            Ok(Ok(got)) => {
                let parsed = got.as_ref().map(elements_of);
                return FinalRead {
                    object: name.to_string(),
                    ok: true,
                    found: got.is_some(),
                    elements: parsed.clone().and_then(Result::ok).unwrap_or_default(),
                    rv: got.as_ref().and_then(|c| c.metadata.resource_version.clone()),
                    malformed: parsed.and_then(Result::err),
                    error: None,
                    time_ns: recorder.now_ns(),
                };
            }
            Ok(Err(e)) => error = format!("member {i}: {e}"),
            Err(_) => error = format!("member {i}: no answer within {op_timeout:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    FinalRead {
        object: name.to_string(),
        ok: false,
        found: false,
        elements: Vec::new(),
        rv: None,
        malformed: None,
        error: Some(error),
        time_ns: recorder.now_ns(),
    }
}

/// Reads every object in rounds `op_timeout` apart until two rounds agree (or `deadline`),
/// records the last round, and returns the largest resourceVersion in it (the watchers'
/// target).
pub(crate) async fn final_reads(
    apis: &[Api<ConfigMap>],
    names: &[String],
    op_timeout: Duration,
    deadline: Instant,
    recorder: &ObjectRecorder,
) -> Option<u64> {
    let key = |r: &FinalRead| (r.ok, r.found, r.rv.clone());
    let mut previous: Option<Vec<FinalRead>> = None;
    let round = loop {
        let mut round = Vec::with_capacity(names.len());
        for name in names {
            round.push(final_read(apis, name, op_timeout, deadline, recorder).await);
        }
        let settled = round.iter().all(|r| r.ok)
            && previous.as_ref().is_some_and(|p| p.iter().map(key).eq(round.iter().map(key)));
        if settled || Instant::now() >= deadline {
            break round;
        }
        previous = Some(round);
        tokio::time::sleep_until((Instant::now() + op_timeout).min(deadline)).await;
    };
    let target = round.iter().filter_map(|r| r.rv.as_deref()?.parse::<u64>().ok()).max();
    for r in round {
        recorder.final_read(r);
    }
    target
}
