//! Sign-in flow support shared by every flow: the return-URL validator ([`redirect`]). The flow
//! store and sealed `state` join it with the redirect flows.

pub mod redirect;
