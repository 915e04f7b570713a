pub enum AdminCommand {}
