//! A tenant's suppression list as an API (docs/ingest.md, "Managing
//! suppressions"): list, add (a bulk import) and remove, for the tenant of
//! the API key only. The list itself is control's (one list per tenant, the
//! one submissions are checked against); this node enters the tenant's
//! changes there with its control token. Every entry of a request is
//! checked here before control is asked, so a bad one changes nothing.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use sluice_control_client::Client;
use sluice_proto::v1::{
    ImportSuppressionsRequest, ListSuppressionsRequest, RemoveSuppressionRequest, Suppression,
    TenantSuppression,
};

use crate::{IngestConfig, IngestError};

/// Most entries one add (import) may carry.
pub const MAX_ADD: usize = 10_000;
/// Most addresses one remove may carry.
pub const MAX_REMOVE: usize = 1_000;
/// Most entries per page (control's limit).
pub const MAX_PAGE: u32 = 1_000;
/// The reasons an entry may give; empty means `manual`.
pub const REASONS: &[&str] = &["hard_bounce", "complaint", "unsubscribe", "manual"];
/// Removals sent to control at once.
const REMOVE_CONCURRENCY: usize = 8;

/// Where this node enters its tenants' suppression changes.
#[derive(Clone, Default)]
pub struct SuppressionList {
    /// One client per control replica, in `control.addr` order; none when
    /// the node does not follow control.
    control: Arc<Vec<Client>>,
}

/// One page of a tenant's list and the token of the next ("" at the end).
pub type Page = (Vec<TenantSuppression>, String);

impl SuppressionList {
    /// Control's list when `config` follows control; otherwise every call
    /// answers that the node has no list to change. Must run inside a
    /// tokio runtime (the client connects on first use).
    pub fn from_config(config: &IngestConfig) -> Result<Self, IngestError> {
        if !config.control.enabled() {
            return Ok(Self::default());
        }
        let clients = sluice_control_client::lazy_clients(&config.control, &config.tls)
            .map_err(|err| IngestError::Config(err.to_string()))?;
        Ok(Self {
            control: Arc::new(clients),
        })
    }

    /// One client per control replica, in `control.addr` order (none when
    /// the node does not follow control).
    pub(crate) fn clients(&self) -> &[Client] {
        &self.control
    }

    /// `call`'s answer from the first replica that is available. Every
    /// call here may be repeated: adds replace, removes of what is gone
    /// remove nothing.
    async fn on_control<T, F, Fut>(&self, call: F) -> Result<T, IngestError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for client in self.control.iter() {
            match call(client.clone()).await {
                Ok(answer) => return Ok(answer.into_inner()),
                Err(status) if status.code() == tonic::Code::Unavailable => last = Some(status),
                Err(status) => return Err(control_error(status)),
            }
        }
        Err(match last {
            Some(status) => control_error(status),
            None => IngestError::NotConfigured(
                "suppression lists are kept by control; this node takes its tenants from its \
                 own file (operators: set control.addr to manage suppressions through ingest)"
                    .into(),
            ),
        })
    }

    /// One page of `tenant`'s list, ordered by address.
    pub async fn list(
        &self,
        tenant: &str,
        page_token: &str,
        page_size: u32,
    ) -> Result<Page, IngestError> {
        if page_size > MAX_PAGE {
            let reason = format!("{page_size} is above {MAX_PAGE}");
            return Err(IngestError::invalid("page_size", reason));
        }
        let request = ListSuppressionsRequest {
            tenant: tenant.to_owned(),
            page_token: page_token.to_owned(),
            page_size,
        };
        let page = self
            .on_control(|mut c| {
                let request = request.clone();
                async move { c.list_suppressions(request).await }
            })
            .await?;
        let entries = page.suppressions.into_iter().map(entry).collect();
        Ok((entries, page.next_page_token))
    }

    /// Adds (or replaces) `entries` for `tenant`; how many addresses were
    /// written. Nothing is written when any entry is bad; errors name the
    /// entry as `name(index)` does.
    pub async fn add(
        &self,
        tenant: &str,
        entries: Vec<TenantSuppression>,
        name: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<u32, IngestError> {
        let suppressions = checked_entries(tenant, entries, name)?;
        let request = ImportSuppressionsRequest {
            tenant: tenant.to_owned(),
            suppressions,
        };
        let answer = self
            .on_control(|mut c| {
                let request = request.clone();
                async move { c.import_suppressions(request).await }
            })
            .await?;
        Ok(answer.imported)
    }

    /// Removes `addresses` from `tenant`'s list; how many were on it.
    pub async fn remove(&self, tenant: &str, addresses: Vec<String>) -> Result<u32, IngestError> {
        if addresses.len() > MAX_REMOVE {
            let reason = format!("{} addresses; at most {MAX_REMOVE}", addresses.len());
            return Err(IngestError::invalid("addresses", reason));
        }
        for (i, address) in addresses.iter().enumerate() {
            entry_address(&format!("addresses[{i}]"), address)?;
        }
        let remove = |address: String| {
            let request = RemoveSuppressionRequest {
                tenant: tenant.to_owned(),
                address,
            };
            self.on_control(move |mut c| {
                let request = request.clone();
                async move { c.remove_suppression(request).await }
            })
        };
        let mut answers = futures::stream::iter(addresses.into_iter().map(remove))
            .buffer_unordered(REMOVE_CONCURRENCY);
        let mut removed = 0;
        while let Some(answer) = answers.next().await {
            removed += u32::from(answer?.removed);
        }
        Ok(removed)
    }
}

/// `suppressions[i]`: how the API's JSON and gRPC requests name an entry.
pub fn by_index(i: usize) -> String {
    format!("suppressions[{i}]")
}

/// `entries` as control's suppressions of `tenant`, each address and
/// reason checked; the error names the first bad entry as `name(index)`.
pub fn checked_entries(
    tenant: &str,
    entries: Vec<TenantSuppression>,
    name: &(dyn Fn(usize) -> String + Sync),
) -> Result<Vec<Suppression>, IngestError> {
    if entries.is_empty() {
        return Err(IngestError::invalid("suppressions", "holds no entry"));
    }
    if entries.len() > MAX_ADD {
        let reason = format!(
            "{} entries; at most {MAX_ADD} per request (split the import)",
            entries.len()
        );
        return Err(IngestError::invalid("suppressions", reason));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        entry_address(&format!("{}.address", name(i)), &e.address)?;
        if !e.reason.is_empty() && !REASONS.contains(&e.reason.as_str()) {
            let reason = format!("{:?} is not one of {}", e.reason, REASONS.join(", "));
            return Err(IngestError::invalid(format!("{}.reason", name(i)), reason));
        }
        out.push(Suppression {
            tenant: tenant.to_owned(),
            address: e.address,
            reason: e.reason,
            created_at: None,
        });
    }
    Ok(out)
}

fn entry(s: Suppression) -> TenantSuppression {
    TenantSuppression {
        address: s.address,
        reason: s.reason,
        created_at: s.created_at,
    }
}

/// Control's refusal in this node's words: bad input is the caller's; a
/// refused token or an unreachable control is the operators'.
fn control_error(status: tonic::Status) -> IngestError {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument => IngestError::invalid("request", status.message()),
        Code::Unauthenticated | Code::PermissionDenied => IngestError::ListUnavailable(format!(
            "control refused this node's token ({}); operators: give ingest's \
             control.token_file a token with the node role",
            status.message()
        )),
        _ => IngestError::ListUnavailable(format!("control answered: {}", status.message())),
    }
}

/// An entry's address: a mail address, or an unsubscribe from one of the
/// tenant's lists, `list:<list> <address>` (docs/feedback.md).
fn entry_address(field: &str, address: &str) -> Result<(), IngestError> {
    match address
        .strip_prefix("list:")
        .and_then(|rest| rest.split_once(' '))
    {
        Some((list, mail)) => {
            if !sluice_links::unsubscribe::valid_list(list) {
                return Err(IngestError::invalid(
                    field,
                    "a list entry is `list:<list> <address>`, the list 1 to 64 of A-Z, a-z, 0-9, `.`, `_` and `-`",
                ));
            }
            crate::validate::address(field, mail).map(drop)
        }
        None => crate::validate::address(field, address).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(address: &str, reason: &str) -> TenantSuppression {
        TenantSuppression {
            address: address.into(),
            reason: reason.into(),
            created_at: None,
        }
    }

    fn field(result: Result<Vec<Suppression>, IngestError>) -> String {
        match result {
            Err(IngestError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    fn check_all(
        tenant: &str,
        entries: Vec<TenantSuppression>,
    ) -> Result<Vec<Suppression>, IngestError> {
        checked_entries(tenant, entries, &by_index)
    }

    #[test]
    fn entries_are_checked_one_by_one_and_named_by_index() {
        let good = check_all("acme", vec![e("a@x.test", ""), e("b@x.test", "complaint")]);
        let good = good.expect("good entries");
        assert_eq!(good.len(), 2);
        assert!(good.iter().all(|s| s.tenant == "acme"));
        let bad_address = vec![e("a@x.test", ""), e("a.x.test", "")];
        assert_eq!(
            field(check_all("acme", bad_address)),
            "suppressions[1].address"
        );
        let bad_reason = vec![e("a@x.test", "spam")];
        assert_eq!(
            field(check_all("acme", bad_reason)),
            "suppressions[0].reason"
        );
        let header_injection = vec![e("a@x.test\r\nBcc: b@x.test", "")];
        assert_eq!(
            field(check_all("acme", header_injection)),
            "suppressions[0].address"
        );
        assert_eq!(field(check_all("acme", Vec::new())), "suppressions");
        let too_many = vec![e("a@x.test", ""); MAX_ADD + 1];
        assert_eq!(field(check_all("acme", too_many)), "suppressions");
        let listed = check_all("acme", vec![e("list:weekly a@x.test", "unsubscribe")]);
        assert_eq!(listed.expect("a list entry").len(), 1);
        for bad in [
            "list:two words a@x.test",
            "list:weekly a.x.test",
            "list:weekly",
        ] {
            let entries = vec![e("a@x.test", ""), e(bad, "")];
            assert_eq!(
                field(check_all("acme", entries)),
                "suppressions[1].address",
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_node_without_control_says_so() {
        let list = SuppressionList::default();
        let err = list.list("acme", "", 0).await.expect_err("no control");
        assert!(matches!(err, IngestError::NotConfigured(_)), "{err:?}");
        assert!(err.to_string().contains("control.addr"), "{err}");
        let err = list
            .remove("acme", vec!["x".into()])
            .await
            .expect_err("bad");
        assert!(
            matches!(err, IngestError::Invalid { .. }),
            "input is checked first: {err:?}"
        );
    }
}
