//! `actix_web::web`'s blocking pool, carrying the context.

use std::future::Future;

use actix_web::error::BlockingError;
use ctx_vars::Context;

/// [`actix_web::web::block`], with `f` running in a copy of the caller's context
/// ([`Context::inherited`], taken now) on the blocking pool: it reads the request's
/// values, and its own `set`s stay in it.
///
/// ```no_run
/// # use ctx_vars::context_var;
/// # #[context_var] static USER: String;
/// # async fn handler() -> Result<(), actix_web::error::BlockingError> {
/// let user = ctx_actix_web::web::block(|| USER.get()).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`actix_web::web::block`]: [`BlockingError`] when `f` panicked.
///
/// # Panics
///
/// As [`actix_web::web::block`]: outside a tokio runtime.
#[track_caller]
pub fn block<F, R>(f: F) -> impl Future<Output = Result<R, BlockingError>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    actix_web::web::block(Context::inherited().wrap(f))
}
