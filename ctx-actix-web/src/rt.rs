//! `actix_web::rt`'s task spawn, carrying the context.

use std::future::Future;

use actix_web::rt::task::JoinHandle;
use ctx_vars::FutureExt;

/// [`actix_web::rt::spawn`], with the task running in a copy of the caller's context
/// ([`Context::inherited`](ctx_vars::Context::inherited), taken now): it reads the
/// request's values, and its own `set`s stay in it.
///
/// ```no_run
/// # use ctx_vars::context_var;
/// # #[context_var] static USER: String;
/// # async fn handler() {
/// let user = ctx_actix_web::rt::spawn(async { USER.get() }).await.unwrap();
/// # }
/// ```
///
/// # Panics
///
/// As [`actix_web::rt::spawn`]: outside an actix (tokio `LocalSet`) runtime.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    actix_web::rt::spawn(future.in_inherited_context())
}
