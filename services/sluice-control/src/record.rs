//! The typed configuration records control keeps, keyed by (kind, name).

use sluice_proto::v1::{
    Deleted, Pool, Provider, RecordKind, SitePolicy, SourceIp, Tenant, WarmupPlan,
    config_change::Change,
};

/// The kinds of named configuration record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pool,
    Ip,
    WarmupPlan,
    SitePolicy,
    Tenant,
    Provider,
}

impl Kind {
    /// Every kind, in the order a snapshot lists them.
    pub const ALL: [Kind; 6] = [
        Kind::Pool,
        Kind::WarmupPlan,
        Kind::Ip,
        Kind::SitePolicy,
        Kind::Tenant,
        Kind::Provider,
    ];

    /// Stable lower-case name, used in store keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::Ip => "ip",
            Kind::WarmupPlan => "warmup_plan",
            Kind::SitePolicy => "site_policy",
            Kind::Tenant => "tenant",
            Kind::Provider => "provider",
        }
    }

    /// The kind a wire `RecordKind` names; `None` for `UNSPECIFIED`.
    pub fn from_proto(kind: RecordKind) -> Option<Kind> {
        Some(match kind {
            RecordKind::Unspecified => return None,
            RecordKind::Pool => Kind::Pool,
            RecordKind::Ip => Kind::Ip,
            RecordKind::WarmupPlan => Kind::WarmupPlan,
            RecordKind::SitePolicy => Kind::SitePolicy,
            RecordKind::Tenant => Kind::Tenant,
            RecordKind::Provider => Kind::Provider,
        })
    }

    /// The wire `RecordKind` of this kind.
    pub fn to_proto(self) -> RecordKind {
        match self {
            Kind::Pool => RecordKind::Pool,
            Kind::Ip => RecordKind::Ip,
            Kind::WarmupPlan => RecordKind::WarmupPlan,
            Kind::SitePolicy => RecordKind::SitePolicy,
            Kind::Tenant => RecordKind::Tenant,
            Kind::Provider => RecordKind::Provider,
        }
    }

    /// The change that announces the record `name` of this kind was deleted.
    pub fn deleted(self, name: &str) -> Change {
        Change::Deleted(Deleted {
            kind: self.to_proto().into(),
            name: name.to_owned(),
        })
    }
}

/// One named configuration record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Pool(Pool),
    Ip(SourceIp),
    WarmupPlan(WarmupPlan),
    SitePolicy(SitePolicy),
    Tenant(Tenant),
    Provider(Provider),
}

impl Record {
    /// The record's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Record::Pool(_) => Kind::Pool,
            Record::Ip(_) => Kind::Ip,
            Record::WarmupPlan(_) => Kind::WarmupPlan,
            Record::SitePolicy(_) => Kind::SitePolicy,
            Record::Tenant(_) => Kind::Tenant,
            Record::Provider(_) => Kind::Provider,
        }
    }

    /// The record's name within its kind.
    pub fn name(&self) -> &str {
        match self {
            Record::Pool(p) => &p.name,
            Record::Ip(ip) => &ip.address,
            Record::WarmupPlan(p) => &p.name,
            Record::SitePolicy(s) => &s.site,
            Record::Tenant(t) => &t.name,
            Record::Provider(p) => &p.name,
        }
    }

    /// The change that announces this record was written.
    pub fn into_change(self) -> Change {
        match self {
            Record::Pool(p) => Change::Pool(p),
            Record::Ip(ip) => Change::Ip(ip),
            Record::WarmupPlan(p) => Change::WarmupPlan(p),
            Record::SitePolicy(s) => Change::SitePolicy(s),
            Record::Tenant(t) => Change::Tenant(t),
            Record::Provider(p) => Change::Provider(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_the_wire_enum() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_proto(kind.to_proto()), Some(kind));
        }
        assert_eq!(Kind::from_proto(RecordKind::Unspecified), None);
    }
}
