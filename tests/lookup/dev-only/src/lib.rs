//! A runtime-neutral library on ctx-vars, tested on tokio: `ctx-tokio` is only a
//! dev-dependency, so the macros in the library's own code must expand to `::ctx_vars`,
//! whichever path they are invoked through.

/// The user this library acts for.
#[ctx_vars::context_var]
pub static USER: String;

/// Greets the user the call is made for.
#[ctx_vars::with_context(USER = user.to_owned())]
pub async fn greet(user: &str) -> String {
    std::future::ready(()).await;
    format!("hello, {}", USER.get().unwrap_or_default())
}
