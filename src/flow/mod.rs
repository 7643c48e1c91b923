//! Sign-in flow support shared by every flow: the return-URL validator ([`redirect`]), the flow
//! store ([`store`]), authenticated encryption ([`seal`]) and the sealed `state` of the redirect
//! flows ([`state`]), which joins them.

pub mod redirect;
pub mod seal;
pub mod state;
pub mod store;
