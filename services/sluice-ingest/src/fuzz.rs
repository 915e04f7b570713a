//! Entry points for the fuzz harness (`loadtest/bench/src/fuzz.rs`) and for
//! the replay of its corpus in the test command. Each takes bytes as a
//! front door receives them and runs what the node runs before anything is
//! published: decoding, every check of the submission, and for templates
//! the rendering of the first recipient. Refusing is a normal outcome; a
//! panic or a hang is a bug.

use std::collections::HashSet;

use prost::Message as _;

use crate::check::{self, Body};
use crate::compose::Copy;
use crate::config::{LimitsConfig, TenantConfig};
use crate::model::{Content, RecipientInput, Submission};
use crate::tenant::Tenants;

/// What the bytes are taken as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An HTTP `POST /v1/messages` body (JSON).
    Json,
    /// A gRPC `SendRequest` (protobuf).
    Proto,
    /// A raw RFC 5322 message of one recipient.
    Raw,
    /// The text part of a template, rendered for one recipient.
    Template,
}

impl Target {
    /// Every target, with the name the harness and the corpus use.
    pub const ALL: [(Target, &'static str); 4] = [
        (Target::Json, "json-request"),
        (Target::Proto, "proto-request"),
        (Target::Raw, "raw-message"),
        (Target::Template, "template"),
    ];
}

/// A fixed node: tenant `acme` owning `acme.example`, pool `shared`, the
/// default limits.
pub struct Harness {
    tenants: Tenants,
    pools: HashSet<String>,
    limits: LimitsConfig,
}

impl Default for Harness {
    fn default() -> Self {
        let tenant: TenantConfig = toml::from_str(
            "name = \"acme\"\napi_keys = []\ndefault_pool = \"shared\"\n\
             [[domains]]\nname = \"acme.example\"\n",
        )
        .expect("the fixed tenant parses");
        Self {
            tenants: Tenants::from_config(&[tenant]).expect("the fixed tenant loads"),
            pools: HashSet::from(["shared".to_owned()]),
            limits: LimitsConfig::default(),
        }
    }
}

impl Harness {
    /// Runs `bytes` as `target`; `Ok` when the node would accept it, `Err`
    /// with the error it would answer.
    pub fn run(&self, target: Target, bytes: &[u8]) -> Result<(), String> {
        let submission = match target {
            Target::Json => crate::http::decode_json(bytes).map_err(|e| e.to_string())?,
            Target::Proto => {
                let request = sluice_proto::v1::SendRequest::decode(bytes)
                    .map_err(|e| format!("not a SendRequest: {e}"))?;
                crate::grpc::submission(request).map_err(|e| e.to_string())?
            }
            Target::Raw => one_recipient(String::new(), Content::Raw(bytes.to_vec())),
            Target::Template => one_recipient(
                "News <news@acme.example>".into(),
                Content::Template {
                    subject: "Hello {{ name }}".into(),
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    html: String::new(),
                },
            ),
        };
        self.check(&submission)
    }

    fn check(&self, submission: &Submission) -> Result<(), String> {
        let tenant = self.tenants.by_name("acme").expect("the fixed tenant");
        let checked = check::submission(submission, &tenant, &self.pools, &self.limits)
            .map_err(|e| e.to_string())?;
        let (Body::Template { from, templates }, Some(recipient)) =
            (&checked.body, submission.recipients.first())
        else {
            return Ok(());
        };
        let copy = Copy {
            index: 0,
            recipient,
            message_id: "fuzz",
            from_domain: &checked.from_domain,
            now_unix: 0,
            extra: Default::default(),
            tracking: None,
        };
        templates
            .message(from, &submission.headers, copy)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

fn one_recipient(from: String, content: Content) -> Submission {
    let substitutions = [("name".to_owned(), "Ann".to_owned())].into();
    Submission {
        from,
        recipients: vec![RecipientInput {
            address: "ann@example.org".into(),
            name: "Ann".into(),
            substitutions,
        }],
        content,
        pool: String::new(),
        campaign: String::new(),
        tags: Default::default(),
        send_at: None,
        trace: Default::default(),
        dsn_to: String::new(),
        tracking: Default::default(),
        list: String::new(),
        idempotency_key: String::new(),
        priority: 0,
        headers: Default::default(),
    }
}
