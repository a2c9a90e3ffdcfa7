//! Checker tests on hand-built histories, and unit tests of the workload's pieces.

use super::client::{Shared, classify};
use super::history::{format_elements, parse_elements};
use super::*;

/// Builds histories with times that increase by 10 ns per operation.
#[derive(Default)]
struct Builder {
    h: ObjectHistory,
    t: u64,
}

impl Builder {
    fn tick(&mut self) -> u64 {
        self.t += 10;
        self.t
    }

    fn create(&mut self, object: &str, outcome: Outcome, rv: Option<u64>) -> &mut Self {
        let t = self.tick();
        self.h.creates.push(CreateOp {
            process: 0,
            object: object.into(),
            outcome,
            rv: rv.map(|r| r.to_string()),
            error: None,
            invoke_ns: t,
            complete_ns: t + 5,
        });
        self
    }

    fn update(
        &mut self,
        object: &str,
        elements: &[u64],
        read_rv: u64,
        outcome: Outcome,
        rv: Option<u64>,
    ) -> &mut Self {
        let t = self.tick();
        self.h.updates.push(UpdateOp {
            process: 1,
            object: object.into(),
            element: *elements.last().expect("an update appends"),
            elements: elements.to_vec(),
            read_rv: read_rv.to_string(),
            outcome,
            rv: rv.map(|r| r.to_string()),
            error: None,
            invoke_ns: t,
            complete_ns: t + 5,
        });
        self
    }

    fn read(&mut self, object: &str, elements: &[u64], rv: u64) -> &mut Self {
        let t = self.tick();
        self.h.reads.push(ReadOp {
            process: 2,
            object: object.into(),
            found: true,
            elements: elements.to_vec(),
            rv: Some(rv.to_string()),
            malformed: None,
            invoke_ns: t,
            complete_ns: t + 5,
        });
        self
    }

    fn final_read(&mut self, object: &str, elements: &[u64], rv: u64) -> &mut Self {
        let t = self.tick();
        self.h.finals.push(FinalRead {
            object: object.into(),
            ok: true,
            found: true,
            elements: elements.to_vec(),
            rv: Some(rv.to_string()),
            malformed: None,
            error: None,
            time_ns: t,
        });
        self
    }

    fn watcher(&mut self, watcher: usize, start_rv: u64) -> &mut Self {
        self.h.watchers.push(WatcherLog {
            watcher,
            start_rv: start_rv.to_string(),
            reached: start_rv.to_string(),
            streams: 1,
            ..WatcherLog::default()
        });
        self
    }

    fn event(&mut self, watcher: usize, object: &str, elements: &[u64], rv: u64) -> &mut Self {
        let t = self.tick();
        let kind = if elements.is_empty() { EventType::Added } else { EventType::Modified };
        self.h.events.push(ObjectWatchEvent {
            watcher,
            kind,
            object: object.into(),
            rv: rv.to_string(),
            elements: elements.to_vec(),
            malformed: None,
            stream: 1,
            time_ns: t,
        });
        self
    }
}

/// Two objects. `p-0`: created at 10, `[1]` ok at 11, `[2]` refused, `[1,3]` ok at 13,
/// `[1,3,4]` info and not applied, `[1,3,5]` info and applied at 15. `p-1`: created at 12,
/// `[7]` ok at 14. Reads of `p-0` at 11 and `p-1` at 12; no watchers.
fn ops() -> Builder {
    let mut b = Builder::default();
    b.create("p-0", Outcome::Ok, Some(10))
        .update("p-0", &[1], 10, Outcome::Ok, Some(11))
        .read("p-0", &[1], 11)
        .create("p-1", Outcome::Ok, Some(12))
        .read("p-1", &[], 12)
        .update("p-0", &[2], 10, Outcome::Fail, None)
        .update("p-0", &[1, 3], 11, Outcome::Ok, Some(13))
        .update("p-1", &[7], 12, Outcome::Ok, Some(14))
        .update("p-0", &[1, 3, 4], 13, Outcome::Info, None)
        .update("p-0", &[1, 3, 5], 13, Outcome::Info, None);
    b
}

/// [`ops`] with the final reads and two watchers: watcher 0 from 9 sees every version,
/// watcher 1 from 13 the two after it.
fn valid() -> Builder {
    let mut b = ops();
    b.final_read("p-0", &[1, 3, 5], 15).final_read("p-1", &[7], 14);
    b.watcher(0, 9)
        .event(0, "p-0", &[], 10)
        .event(0, "p-0", &[1], 11)
        .event(0, "p-1", &[], 12)
        .event(0, "p-0", &[1, 3], 13)
        .event(0, "p-1", &[7], 14)
        .event(0, "p-0", &[1, 3, 5], 15);
    b.watcher(1, 13).event(1, "p-1", &[7], 14).event(1, "p-0", &[1, 3, 5], 15);
    b
}

fn kinds(v: &ObjectVerdict) -> Vec<AnomalyKind> {
    v.anomalies.iter().map(|a| a.kind).collect()
}

#[test]
fn a_valid_history_is_valid_with_info_updates_seen_and_not_seen() {
    let v = check(&valid().h);
    assert!(v.valid && v.complete, "{v:#?}");
    let counts = ObjectCounts {
        ok: 3,
        fail: 1,
        info: 2,
        creates: 2,
        reads: 2,
        watch_events_checked: 8,
        watchers: 2,
        objects: 2,
    };
    assert_eq!(v.counts, counts);
}

#[test]
fn an_info_update_in_the_final_list_must_be_in_the_watch_too() {
    let mut b = valid();
    // Watcher 1 never gets the applied info update's version 3 of p-0.
    b.h.events.retain(|e| !(e.watcher == 1 && e.rv == "15"));
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::WatchGap], "{v:#?}");
    assert!(v.anomalies[0].explanation.contains("[5]"), "{v:#?}");
    // A watcher that ended with 410 Gone is not expected to see the end.
    b.h.watchers[1].gone = Some("410 Gone".into());
    assert!(check(&b.h).valid);
}

#[test]
fn a_lost_acknowledged_update_is_found() {
    let mut b = ops();
    // p-0 ends as if [1,3] had never been written: [1] then the info update [1,5].
    b.final_read("p-0", &[1], 11).final_read("p-1", &[7], 14);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::LostUpdate], "{v:#?}");
    let a = &v.anomalies[0];
    assert_eq!(a.object, "p-0");
    assert!(a.explanation.contains("appending 3"), "{a:#?}");
    assert!(a.ops.iter().any(|o| o.contains("appending 3") && o.contains("Ok")), "{a:#?}");
}

#[test]
fn an_acknowledged_list_that_is_not_a_prefix_is_found() {
    let mut b = ops();
    b.final_read("p-0", &[3, 1, 5], 15).final_read("p-1", &[7], 14);
    let v = check(&b.h);
    assert!(kinds(&v).contains(&AnomalyKind::NotPrefix), "{v:#?}");
}

#[test]
fn a_failed_updates_element_appearing_is_found() {
    let mut b = ops();
    b.final_read("p-0", &[1, 3, 5, 2], 16).final_read("p-1", &[7], 14);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::FailedApplied], "{v:#?}");
    assert!(v.anomalies[0].explanation.contains("element 2"), "{v:#?}");
}

#[test]
fn an_element_nobody_wrote_and_a_duplicate_are_found() {
    let mut b = ops();
    b.final_read("p-0", &[1, 3, 5, 99, 5], 17).final_read("p-1", &[7], 14);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::DuplicateElement, AnomalyKind::UnknownElement], "{v:#?}");
}

#[test]
fn a_read_that_is_not_a_prefix_is_found() {
    let mut b = valid();
    b.read("p-0", &[3], 13);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::ReadNotPrefix], "{v:#?}");
}

#[test]
fn a_stale_read_and_an_absent_object_are_found() {
    let mut b = valid();
    // Sent after [1,3] was acknowledged, yet it shows only [1].
    b.read("p-0", &[1], 11);
    let t = b.tick();
    b.h.reads.push(ReadOp {
        process: 3,
        object: "p-1".into(),
        found: false,
        elements: Vec::new(),
        rv: None,
        malformed: None,
        invoke_ns: t,
        complete_ns: t + 1,
    });
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::StaleRead, AnomalyKind::LostObject], "{v:#?}");
}

#[test]
fn resource_versions_must_increase_with_the_list() {
    let mut b = ops();
    // An acknowledged update of a longer list with a smaller resourceVersion.
    b.update("p-1", &[7, 8], 14, Outcome::Ok, Some(9));
    b.final_read("p-0", &[1, 3, 5], 15).final_read("p-1", &[7, 8], 16);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::RvConflict, AnomalyKind::RvOrder], "{v:#?}");
    assert!(v.anomalies[1].explanation.contains("resourceVersion 14, not below"), "{v:#?}");
}

#[test]
fn a_watch_with_a_gap_is_found() {
    let mut b = valid();
    b.h.events.retain(|e| !(e.watcher == 0 && e.rv == "13"));
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::WatchGap], "{v:#?}");
    let a = &v.anomalies[0];
    assert_eq!((a.object.as_str(), a.watcher), ("p-0", Some(0)));
    assert!(a.explanation.contains("from version 1 to 3"), "{a:#?}");
}

#[test]
fn a_watch_missing_the_first_versions_after_its_start_is_found() {
    let mut b = valid();
    // Watcher 2 starts at 11, so p-0's version 2 (at 13) is its first; it skips it.
    b.watcher(2, 11).event(2, "p-1", &[], 12).event(2, "p-1", &[7], 14).event(2, "p-0", &[1, 3, 5], 15);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::WatchGap], "{v:#?}");
    assert!(v.anomalies[0].explanation.contains("versions 2 to 2"), "{v:#?}");
}

#[test]
fn a_duplicate_event_is_found() {
    let mut b = valid();
    b.event(1, "p-0", &[1, 3, 5], 15);
    let v = check(&b.h);
    let k = kinds(&v);
    assert!(k.iter().all(|k| *k == AnomalyKind::WatchDuplicate) && k.len() == 2, "{v:#?}");
    assert!(v.anomalies.iter().any(|a| a.explanation.contains("version 3 delivered again")), "{v:#?}");
}

#[test]
fn an_event_at_or_before_the_start_is_found() {
    let mut b = valid();
    // Watcher 1 started at 13 and also got the version at 13.
    let at_start = ObjectWatchEvent {
        watcher: 1,
        kind: EventType::Modified,
        object: "p-0".into(),
        rv: "13".into(),
        elements: vec![1, 3],
        malformed: None,
        stream: 1,
        time_ns: 1,
    };
    let first = b.h.events.iter().position(|e| e.watcher == 1).expect("watcher 1 has events");
    b.h.events.insert(first, at_start);
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::EventBeforeStart], "{v:#?}");
}

#[test]
fn an_uncommitted_event_and_a_wrong_type_are_found() {
    let mut b = valid();
    b.event(1, "p-0", &[1, 3, 4], 16);
    b.h.events[0].kind = EventType::Modified;
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::WrongEventType, AnomalyKind::EventNotCommitted], "{v:#?}");
}

#[test]
fn an_object_without_a_final_read_is_not_valid() {
    let mut b = valid();
    b.h.finals.retain(|f| f.object != "p-1");
    let v = check(&b.h);
    assert_eq!(kinds(&v), [AnomalyKind::NoFinalRead], "{v:#?}");
    // An object nobody managed to create, whose final read failed, has nothing to check.
    let mut b = valid();
    b.create("p-2", Outcome::Info, None);
    b.h.finals.push(FinalRead {
        object: "p-2".into(),
        ok: false,
        found: false,
        elements: Vec::new(),
        rv: None,
        malformed: None,
        error: Some("timed out".into()),
        time_ns: 1,
    });
    let v = check(&b.h);
    assert!(v.valid, "{v:#?}");
}

#[test]
fn a_watcher_short_of_the_end_is_incomplete() {
    let mut b = valid();
    b.h.watchers[1].fell_short = Some("the tail ran out".into());
    b.h.events.retain(|e| !(e.watcher == 1 && e.rv == "15"));
    let v = check(&b.h);
    assert!(v.valid && !v.complete, "{v:#?}");
}

#[test]
fn anomalies_are_capped_but_counted() {
    let mut b = ops();
    let many: Vec<u64> = (1000..1000 + MAX_ANOMALIES as u64 + 5).collect();
    b.final_read("p-0", &[[1, 3, 5].as_slice(), &many].concat(), 15).final_read("p-1", &[7], 14);
    let v = check(&b.h);
    assert_eq!(v.anomaly_count, MAX_ANOMALIES + 5);
    assert_eq!(v.anomalies.len(), MAX_ANOMALIES);
    assert_eq!(v.by_kind.get(&AnomalyKind::UnknownElement), Some(&(MAX_ANOMALIES + 5)));
}

#[test]
fn a_history_round_trips_through_json_lines() -> Result<(), Box<dyn std::error::Error>> {
    let h = valid().h;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("objects.jsonl");
    h.save(&path)?;
    let text = std::fs::read_to_string(&path)?;
    assert!(text.lines().next().is_some_and(|l| l.contains(r#""type":"create""#)), "{text}");
    assert!(text.contains(r#""kind":"MODIFIED""#), "{text}");
    assert_eq!(ObjectHistory::load(&path)?, h);
    std::fs::write(&path, format!("{}\n{{\"type\":\"update\"}}\n", text.lines().next().unwrap_or("")))?;
    let err = ObjectHistory::load(&path).err().ok_or("a bad line parsed")?;
    let msg = err.to_string();
    assert!(msg.contains("line 2") && msg.contains("objects.jsonl"), "{msg}");
    Ok(())
}

#[test]
fn prefixes_are_sanitized_to_dns_labels() {
    assert_eq!(sanitize_prefix("jepsen/42"), "jepsen-42");
    assert_eq!(sanitize_prefix("--Objects//Live_"), "objects-live");
    assert_eq!(sanitize_prefix("///"), "jepsen");
    let long = sanitize_prefix(&"a-".repeat(40));
    assert!(long.len() <= 40 && !long.ends_with('-'), "{long}");
}

#[test]
fn lists_parse_and_format() {
    assert_eq!(parse_elements(""), Ok(vec![]));
    assert_eq!(parse_elements("1,22,3"), Ok(vec![1, 22, 3]));
    assert!(parse_elements("1,x").is_err());
    assert_eq!(format_elements(&[4, 5]), "4,5");
    assert_eq!(format_elements(&[]), "");
}

#[test]
fn refusals_fail_and_the_rest_is_unknown() {
    let status = |code| kube::Error::Api(Box::new(kube::core::Status { code, ..Default::default() }));
    assert_eq!(classify(&status(409)), Outcome::Fail);
    assert_eq!(classify(&status(422)), Outcome::Fail);
    assert_eq!(classify(&status(408)), Outcome::Info);
    assert_eq!(classify(&status(500)), Outcome::Info);
    assert_eq!(classify(&status(504)), Outcome::Info);
}

#[test]
fn a_full_object_is_replaced_once() {
    let shared = Shared::new("p", 2);
    shared.rotate(1, "p-1");
    // A second client that also saw p-1 full does not rotate p-2 away.
    shared.rotate(1, "p-1");
    assert_eq!(shared.names(), ["p-0", "p-1", "p-2"]);
}

#[tokio::test]
async fn an_empty_spec_is_refused() {
    let spec = ObjectSpec { clients: 0, ..ObjectSpec::new("p", 1) };
    let err =
        run(&[std::path::PathBuf::from("/nonexistent")], &spec, &ObjectRecorder::new(), Instant::now()).await;
    assert!(matches!(err, Err(ObjectError::Invalid(_))), "{err:?}");
}
