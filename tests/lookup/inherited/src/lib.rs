//! A library that depends on ctx only through `rt`, a renamed adapter inherited from the
//! workspace, and on ctx-vars only as a dev-dependency: the macros in its own code must
//! expand to `::rt`, which is all the library can see.

/// The request this library is serving.
#[rt::context_var]
pub static REQUEST: u64;

/// The tenant, `"none"` until set.
#[rt::context_var(name = "tenant")]
pub static TENANT: &'static str = "none";

/// Serves one request: its id is set for the call alone.
#[rt::with_context(REQUEST = id)]
pub async fn handle(id: u64) -> (Option<u64>, &'static str) {
    std::future::ready(()).await;
    (REQUEST.get(), TENANT.get().unwrap_or_default())
}

/// The same, without `async`.
#[rt::with_context(TENANT = tenant)]
pub fn tenant_of(tenant: &'static str) -> &'static str {
    TENANT.get().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    // Compiled with the dev-dependencies too; the lookup still names `rt`.
    #[rt::context_var]
    static LOCAL: u32;

    #[test]
    fn the_macros_name_the_normal_dependency_in_unit_tests_too() {
        rt::Context::new().run(|| {
            LOCAL.set(7);
            assert_eq!(LOCAL.get(), Some(7));
            assert_eq!(super::tenant_of("acme"), "acme");
            assert_eq!(super::TENANT.get(), Some("none"));
        });
    }
}
