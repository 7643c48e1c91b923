//! Sign-in flow support shared by every flow: the return-URL validator ([`redirect`]) and the
//! flow store ([`store`]). Sealed `state` joins them with the redirect flows.

pub mod redirect;
pub mod store;
