//! The library's variables, read through ctx-vars (a dev-dependency here), in a test
//! that `#[rt::test]` runs: the entry macros find the renamed adapter too.

use ctx_tests_inherited::{REQUEST, TENANT, handle, tenant_of};

#[rt::test]
async fn a_library_on_an_inherited_renamed_adapter_expands_to_it() {
    TENANT.set("acme");
    assert_eq!(handle(42).await, (Some(42), "acme"));
    assert_eq!(REQUEST.get(), None, "the id was set for the call alone");
    let task = rt::spawn(async { (TENANT.get(), handle(7).await) });
    assert_eq!(task.await.unwrap(), (Some("acme"), (Some(7), "acme")));
    assert_eq!(tenant_of("other"), "other");
    assert_eq!(ctx_vars::Context::current().get(&TENANT), Some(&"acme"));
    assert_eq!(TENANT.name(), "tenant");
}
