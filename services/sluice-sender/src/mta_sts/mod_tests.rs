use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::*;

/// What the fake DNS and HTTPS answer, and how often a policy was fetched.
struct State {
    txt: Mutex<Result<Vec<String>, String>>,
    policy: Mutex<Result<Policy, String>>,
    fetches: AtomicUsize,
    /// When set, a fetch waits for a permit.
    gate: Option<Arc<Semaphore>>,
}

struct Fake(Arc<State>);

impl Source for Fake {
    async fn txt(&self, _: &str) -> Result<Vec<String>, String> {
        self.0.txt.lock().unwrap().clone()
    }

    async fn fetch(&self, _: &str) -> Result<Policy, String> {
        self.0.fetches.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.0.gate {
            gate.acquire().await.expect("gate").forget();
        }
        self.0.policy.lock().unwrap().clone()
    }
}

struct Harness {
    state: Arc<State>,
    now: Arc<Mutex<Instant>>,
    policies: Policies<Fake>,
}

fn enforce(mx: &str, max_age: u64) -> Policy {
    Policy {
        mode: Mode::Enforce,
        mx: vec![mx.into()],
        max_age,
    }
}

fn txt(id: &str) -> Result<Vec<String>, String> {
    Ok(vec![format!("v=STSv1; id={id};")])
}

fn harness(gate: Option<Arc<Semaphore>>) -> Harness {
    let state = Arc::new(State {
        txt: Mutex::new(txt("1")),
        policy: Mutex::new(Ok(enforce("mx.a.test", 600))),
        fetches: AtomicUsize::new(0),
        gate,
    });
    let now = Arc::new(Mutex::new(Instant::now()));
    let clock_now = now.clone();
    let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
    let policies = Policies::new(Fake(state.clone()), 100).with_clock(clock);
    Harness {
        state,
        now,
        policies,
    }
}

impl Harness {
    fn advance(&self, secs: u64) {
        *self.now.lock().unwrap() += Duration::from_secs(secs);
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn set_txt(&self, answer: Result<Vec<String>, String>) {
        *self.state.txt.lock().unwrap() = answer;
    }

    fn set_policy(&self, answer: Result<Policy, String>) {
        *self.state.policy.lock().unwrap() = answer;
    }

    async fn mx(&self) -> Option<String> {
        let policy = self.policies.policy("A.test.").await;
        policy.map(|p| p.mx[0].clone())
    }
}

#[tokio::test]
async fn no_txt_record_and_nothing_cached_means_no_policy() {
    let h = harness(None);
    h.set_txt(Ok(vec!["v=spf1 -all".into()]));
    assert_eq!(h.mx().await, None);
    assert_eq!(h.fetches(), 0);
}

#[tokio::test]
async fn a_policy_is_fetched_once_per_id_until_it_expires() {
    let h = harness(None);
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    h.advance(599);
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    assert_eq!(h.fetches(), 1, "same id, unexpired: the cached policy");
    h.advance(1);
    h.set_policy(Ok(enforce("mx2.a.test", 600)));
    assert_eq!(h.mx().await.as_deref(), Some("mx2.a.test"), "expired");
    assert_eq!(h.fetches(), 2);
    h.set_txt(txt("2"));
    h.set_policy(Ok(enforce("mx3.a.test", 600)));
    assert_eq!(h.mx().await.as_deref(), Some("mx3.a.test"), "new id");
    assert_eq!(h.fetches(), 3);
}

#[tokio::test]
async fn a_failed_fetch_without_a_cached_policy_fails_open() {
    let h = harness(None);
    h.set_policy(Err("connection refused".into()));
    assert_eq!(h.mx().await, None);
    assert_eq!(h.fetches(), 1);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_cached_policy() {
    let h = harness(None);
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    h.set_txt(txt("2"));
    h.set_policy(Err("connection refused".into()));
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    assert_eq!(h.fetches(), 2);
    h.advance(600);
    assert_eq!(h.mx().await, None, "expired, and the fetch still fails");
}

#[tokio::test]
async fn a_failed_fetch_is_not_retried_for_a_while() {
    let h = harness(None);
    h.set_policy(Err("timed out".into()));
    assert_eq!(h.mx().await, None);
    assert_eq!(h.mx().await, None);
    assert_eq!(h.fetches(), 1);
    h.advance(cache::RETRY_FAILED_AFTER.as_secs());
    h.set_policy(Ok(enforce("mx.a.test", 600)));
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    assert_eq!(h.fetches(), 2);
}

#[tokio::test]
async fn no_txt_record_or_a_dns_failure_keeps_the_cached_policy() {
    let h = harness(None);
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    h.set_txt(Ok(Vec::new()));
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    h.set_txt(Err("SERVFAIL".into()));
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"));
    h.set_txt(Ok(vec!["v=STSv1; id=a;".into(), "v=STSv1; id=b;".into()]));
    assert_eq!(h.mx().await.as_deref(), Some("mx.a.test"), "invalid TXT");
    assert_eq!(h.fetches(), 1);
    h.advance(600);
    assert_eq!(h.mx().await, None);
}

#[tokio::test]
async fn concurrent_routings_of_a_domain_share_one_fetch() {
    let gate = Arc::new(Semaphore::new(0));
    let h = harness(Some(gate.clone()));
    let asks = futures::future::join_all((0..20).map(|_| h.mx()));
    let open = async {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
    };
    let (answers, ()) = tokio::join!(asks, open);
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("mx.a.test")),
        "{answers:?}"
    );
    assert_eq!(h.fetches(), 1);
    assert!(
        h.policies.flights.lock().unwrap().is_empty(),
        "the flight is gone"
    );
}

fn host(name: &str) -> MxHost {
    MxHost {
        name: name.into(),
        preference: 10,
        addrs: vec!["127.0.0.2:25".parse().unwrap()],
        verify_tls: false,
    }
}

#[test]
fn enforce_keeps_matching_hosts_and_marks_them_for_verification() {
    let policy = enforce("*.a.test", 60);
    let hosts = vec![host("mx1.a.test"), host("mx.evil.test"), host("mx2.a.test")];
    let Applied::Deliver(kept) = apply(Some(&policy), "a.test", hosts) else {
        panic!("hosts match");
    };
    let names: Vec<&str> = kept.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["mx1.a.test", "mx2.a.test"]);
    assert!(kept.iter().all(|h| h.verify_tls));
}

#[test]
fn enforce_without_a_matching_host_refuses_and_says_why() {
    let policy = enforce("mx.a.test", 60);
    let refused = apply(Some(&policy), "a.test", vec![host("mx.evil.test")]);
    let Applied::Refuse(text) = refused else {
        panic!("nothing matches: {refused:?}");
    };
    assert!(
        text.contains("a.test") && text.contains("MTA-STS"),
        "{text}"
    );
    assert!(
        text.contains("no MX host") && text.contains("mx.evil.test"),
        "{text}"
    );
}

#[test]
fn testing_none_and_no_policy_deliver_to_every_host_unverified() {
    let hosts = vec![host("mx.evil.test")];
    let testing = Policy {
        mode: Mode::Testing,
        ..enforce("mx.a.test", 60)
    };
    let none = Policy {
        mode: Mode::None,
        ..enforce("mx.a.test", 60)
    };
    for policy in [Some(&testing), Some(&none), None] {
        let applied = apply(policy, "a.test", hosts.clone());
        assert_eq!(applied, Applied::Deliver(hosts.clone()), "{policy:?}");
    }
}
