//! Starting a whole scenario in-process, and stopping it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::error::SimError;
use crate::ledger::Ledger;
use crate::provider::{Provider, lock};
use crate::report::{ProviderInfo, Report};
use crate::scenario::Scenario;
use crate::server::run;
use crate::tls::self_signed_acceptor;

/// Starts simulators. See [`Simulator::start`].
pub struct Simulator;

/// A running scenario: its addresses, its findings so far, and its stop.
pub struct SimHandle {
    providers: Vec<ProviderInfo>,
    ledger: Arc<Mutex<Ledger>>,
    stop: watch::Sender<bool>,
    servers: JoinSet<()>,
    /// The STARTTLS certificate (DER), when a provider offers STARTTLS.
    tls_cert: Option<Vec<u8>>,
}

impl Simulator {
    /// Binds every provider's listener and starts serving. Must be called
    /// inside a Tokio runtime. Fails if a listener cannot be bound or the
    /// TLS certificate cannot be made.
    pub async fn start(scenario: Scenario) -> Result<SimHandle, SimError> {
        let mut listeners = Vec::new();
        for config in &scenario.providers {
            let addr = config.listen;
            let bound = TcpListener::bind(addr).await;
            listeners.push(bound.map_err(|source| SimError::Bind { addr, source })?);
        }
        Self::start_with_listeners(scenario, listeners)
    }

    /// Like [`Simulator::start`], on listeners the caller bound already, one
    /// per provider in scenario order (their `listen` fields are ignored).
    pub fn start_with_listeners(
        scenario: Scenario,
        listeners: Vec<TcpListener>,
    ) -> Result<SimHandle, SimError> {
        scenario.validate()?;
        if listeners.len() != scenario.providers.len() {
            let msg = format!(
                "{} listeners for {} providers",
                listeners.len(),
                scenario.providers.len()
            );
            return Err(SimError::Invalid(msg));
        }
        let (tls, tls_cert) = match tls_for(&scenario)? {
            Some((acceptor, cert)) => (Some(acceptor), Some(cert.to_vec())),
            None => (None, None),
        };
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (stop, _) = watch::channel(false);
        let mut servers = JoinSet::new();
        if scenario.providers.iter().any(|p| p.feedback.is_some()) {
            servers.spawn(crate::outbox::run(Arc::clone(&ledger), stop.subscribe()));
        }
        let mut providers = Vec::new();
        let configs = scenario.providers.into_iter().zip(listeners);
        for (index, (config, listener)) in configs.enumerate() {
            let addr = listener.local_addr().map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
            providers.push(ProviderInfo {
                name: config.name.clone(),
                addr,
                limits: config.limits.clone(),
            });
            let seed = scenario.seed.wrapping_add(index as u64);
            let provider = Provider::new(config, addr, seed, Arc::clone(&ledger), tls.clone());
            let mut stopped = stop.subscribe();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            servers.spawn(run(listener, Arc::new(provider), shutdown));
        }
        Ok(SimHandle {
            providers,
            ledger,
            stop,
            servers,
            tls_cert,
        })
    }
}

fn tls_for(
    scenario: &Scenario,
) -> Result<Option<(TlsAcceptor, rustls::pki_types::CertificateDer<'static>)>, SimError> {
    if !scenario.providers.iter().any(|p| p.starttls) {
        return Ok(None);
    }
    let mut hosts: Vec<String> = scenario.providers.iter().map(|p| p.host()).collect();
    hosts.push("localhost".to_string());
    // A static route reaches a provider by address, and a client that
    // verifies the certificate checks that address.
    hosts.extend(scenario.providers.iter().map(|p| p.listen.ip().to_string()));
    hosts.sort();
    hosts.dedup();
    self_signed_acceptor(hosts).map(Some)
}

impl SimHandle {
    /// The certificate the providers offer with STARTTLS (DER; self-signed,
    /// naming every provider's host and `localhost`), if any offers it.
    pub fn tls_certificate_der(&self) -> Option<&[u8]> {
        self.tls_cert.as_deref()
    }

    /// The bound address of the provider called `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.addr)
    }

    /// Every provider's name and bound address, in scenario order.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.providers
            .iter()
            .map(|p| (p.name.clone(), p.addr))
            .collect()
    }

    /// Where late feedback (scenario `feedback`) is mailed: the sender's
    /// inbound MX. Feedback waits until this is called.
    pub fn send_feedback_to(&self, mx: SocketAddr) {
        lock(&self.ledger).feedback_mx = Some(mx);
    }

    /// The bytes of every accepted message that went to `recipient`, in
    /// acceptance order, from providers with `keep_bodies`.
    pub fn bodies_to(&self, recipient: &str) -> Vec<Vec<u8>> {
        let ledger = lock(&self.ledger);
        let to = |(rcpts, _): &&(Vec<String>, Vec<u8>)| rcpts.iter().any(|r| r == recipient);
        ledger
            .bodies
            .iter()
            .filter(to)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The report so far: accepted messages, counters and violations.
    pub fn snapshot(&self) -> Report {
        Report::build(&self.providers, &lock(&self.ledger))
    }

    /// Stops accepting, closes every open session with `421 4.3.2`, waits
    /// for them to end, and returns the final report.
    pub async fn shutdown(mut self) -> Report {
        let _ = self.stop.send(true);
        while self.servers.join_next().await.is_some() {}
        self.snapshot()
    }
}
