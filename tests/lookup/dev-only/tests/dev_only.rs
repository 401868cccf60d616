//! The library's variables on tokio, with macros invoked through the dev-only adapter.

use ctx_tests_dev_only::{USER, greet};

// Expands to `::ctx_vars` too (the normal dependency), which tests can also see.
#[ctx_tokio::context_var]
static ATTEMPT: u32 = 1;

#[ctx_tokio::test]
async fn a_library_on_ctx_vars_tested_through_an_adapter() {
    USER.set("ada".to_owned());
    ATTEMPT.set(2);
    let task = ctx_tokio::spawn(async { (greet("grace").await, USER.get(), ATTEMPT.get()) });
    let (greeting, user, attempt) = task.await.unwrap();
    assert_eq!(greeting, "hello, grace");
    assert_eq!(user.as_deref(), Some("ada"));
    assert_eq!(attempt, Some(2));
    assert_eq!(USER.get().as_deref(), Some("ada"));
}
