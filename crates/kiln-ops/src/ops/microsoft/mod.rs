//! com.microsoft's contrib ops that decoder LLMs need (the older com.microsoft modules are
//! still the `ms_*` files beside this folder).
pub(crate) mod gqa;
