//! `#[context_var]` and `#[with_context]`: every form that must compile and behave.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use ctx_tests::{Pool, block_on, fresh, seed_main, yield_now};
use ctx_vars::{Context, context_var, with_context};

#[context_var]
static VAR: String;

/// Documented, public, with other attributes: all kept.
#[context_var]
#[allow(dead_code)]
pub static LEVEL: u32 = 3;

static BUILDS: AtomicUsize = AtomicUsize::new(0);

#[context_var]
static COMPUTED: Vec<u32> = {
    BUILDS.fetch_add(1, Ordering::SeqCst);
    (1..=3).collect()
};

#[context_var(name = "request.id")]
static REQUEST_ID: u64;

#[context_var]
#[allow(non_upper_case_globals)]
static r#type: &'static str = "raw";

/// The seed's first example, written with the macros.
#[test]
fn seed_example_with_macros() {
    fresh(|| block_on(seed_main(&VAR)));
}

#[test]
fn context_var_declares_variables_with_names_and_defaults() {
    fresh(|| {
        let _: &ctx_vars::ContextVar<String> = &VAR;
        assert_eq!(VAR.get(), None);
        assert_eq!(VAR.name(), "VAR");
        assert_eq!(LEVEL.get(), Some(3));
        assert_eq!(REQUEST_ID.name(), "request.id");
        assert_eq!(r#type.name(), "type");
        assert_eq!(r#type.get(), Some("raw"));
        assert!(
            !Context::current().contains(&LEVEL),
            "a default is not a value"
        );
    });
}

#[test]
fn context_var_default_is_any_expression_built_once() {
    fresh(|| {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| COMPUTED.get()))
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), Some(vec![1, 2, 3]));
        }
        assert_eq!(COMPUTED.get(), Some(vec![1, 2, 3]));
        assert_eq!(BUILDS.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn context_var_works_in_a_function_body() {
    #[context_var]
    static LOCAL: i64 = -1;
    fresh(|| {
        assert_eq!(LOCAL.get(), Some(-1));
        LOCAL.set(5);
        assert_eq!(LOCAL.get(), Some(5));
    });
}

#[with_context]
async fn isolated(value: &str) -> Option<String> {
    let seen = VAR.get();
    VAR.set(value.to_owned());
    yield_now(1).await;
    assert_eq!(VAR.get().as_deref(), Some(value));
    seen
}

#[test]
fn async_fn_captures_at_the_call_and_does_not_leak() {
    fresh(|| {
        VAR.set("at call".into());
        let fut = isolated("inner");
        VAR.set("at poll".into());
        assert_eq!(block_on(fut).as_deref(), Some("at call"));
        assert_eq!(VAR.get().as_deref(), Some("at poll"));
    });
}

#[test]
fn the_future_keeps_its_context_wherever_it_is_polled() {
    fresh(|| {
        VAR.set("caller".into());
        let pool = Pool::new(2);
        // The pool knows nothing of ctx; the future carries its context itself.
        let result = pool.spawn_raw(isolated("on the pool")).recv().unwrap();
        assert_eq!(result.as_deref(), Some("caller"));
        pool.shutdown();
    });
}

struct Request {
    user: String,
    id: u64,
}

static PRESET_EVALUATIONS: AtomicUsize = AtomicUsize::new(0);

fn counted<T>(value: T) -> T {
    PRESET_EVALUATIONS.fetch_add(1, Ordering::SeqCst);
    value
}

#[with_context(VAR = counted(request.user.clone()), REQUEST_ID = request.id, LEVEL = LEVEL.get().unwrap() + 1)]
async fn handle(request: Request) -> (Option<String>, Option<u64>, Option<u32>) {
    yield_now(2).await;
    (VAR.get(), REQUEST_ID.get(), LEVEL.get())
}

#[test]
fn presets_use_the_arguments_once_at_the_call_in_the_callers_context() {
    fresh(|| {
        LEVEL.set(10);
        let before = PRESET_EVALUATIONS.load(Ordering::SeqCst);
        let fut = handle(Request {
            user: "ada".into(),
            id: 7,
        });
        assert_eq!(
            PRESET_EVALUATIONS.load(Ordering::SeqCst),
            before + 1,
            "at the call"
        );
        LEVEL.set(20);
        assert_eq!(block_on(fut), (Some("ada".into()), Some(7), Some(11)));
        assert_eq!(
            PRESET_EVALUATIONS.load(Ordering::SeqCst),
            before + 1,
            "once"
        );
        assert_eq!(
            (VAR.get(), REQUEST_ID.get(), LEVEL.get()),
            (None, None, Some(20))
        );
    });
}

#[derive(Debug, PartialEq)]
struct ParseError;

#[with_context(LEVEL = 1)]
async fn fallible(input: &str) -> Result<u32, ParseError> {
    let n: u32 = input.parse().map_err(|_| ParseError)?;
    LEVEL.set(n);
    Ok(n + LEVEL.get().ok_or(ParseError)?)
}

#[with_context(LEVEL = 1)]
fn fallible_sync(input: &str) -> Result<u32, ParseError> {
    let n: u32 = input.parse().map_err(|_| ParseError)?;
    LEVEL.set(n);
    if n == 0 {
        return Err(ParseError);
    }
    Ok(n + LEVEL.get().ok_or(ParseError)?)
}

#[test]
fn question_mark_and_return_work_in_both_forms() {
    fresh(|| {
        assert_eq!(block_on(fallible("4")), Ok(8));
        assert_eq!(block_on(fallible("x")), Err(ParseError));
        assert_eq!(fallible_sync("4"), Ok(8));
        assert_eq!(fallible_sync("0"), Err(ParseError));
        assert_eq!(fallible_sync("x"), Err(ParseError));
        assert_eq!(LEVEL.get(), Some(3));
    });
}

#[with_context]
fn sync_isolated(value: u32) -> Option<u32> {
    let seen = LEVEL.get();
    LEVEL.set(value);
    seen
}

#[test]
fn a_plain_fn_runs_in_a_copy() {
    fresh(|| {
        LEVEL.set(1);
        assert_eq!(sync_isolated(2), Some(1));
        assert_eq!(LEVEL.get(), Some(1));
    });
}

struct Service {
    calls: u32,
}

impl Service {
    #[with_context(LEVEL = 100)]
    async fn by_ref(&self) -> Option<u32> {
        LEVEL.get()
    }

    #[with_context]
    async fn by_mut(&mut self) -> u32 {
        self.calls += 1;
        LEVEL.set(self.calls);
        self.calls
    }

    #[with_context(LEVEL = self.calls)]
    async fn by_value(self) -> Option<u32> {
        LEVEL.get()
    }

    #[with_context(LEVEL = 7)]
    async fn pinned(self: Pin<&mut Self>) -> Option<u32> {
        LEVEL.get()
    }

    #[with_context(LEVEL = self.calls * 2)]
    fn sync_method(&mut self) -> Option<u32> {
        self.calls += 1;
        LEVEL.get()
    }
}

#[test]
fn methods_of_every_receiver() {
    fresh(|| {
        let mut service = Service { calls: 0 };
        assert_eq!(block_on(service.by_ref()), Some(100));
        assert_eq!(block_on(service.by_mut()), 1);
        assert_eq!(block_on(service.by_mut()), 2);
        assert_eq!(service.sync_method(), Some(4));
        assert_eq!(
            block_on(std::pin::pin!(Service { calls: 0 }).as_mut().pinned()),
            Some(7)
        );
        assert_eq!(block_on(service.by_value()), Some(3));
        assert_eq!(LEVEL.get(), Some(3));
    });
}

#[with_context(LEVEL = u32::try_from(items.len()).unwrap())]
async fn generic<T, I>(items: Vec<T>, extra: impl Into<u32>, _: I) -> u32
where
    T: Clone + Send,
    I: IntoIterator<Item = u8>,
{
    let _copies = items.clone();
    LEVEL.get().unwrap() + extra.into()
}

#[with_context]
fn generic_sync<T: std::fmt::Debug>(value: T, label: impl AsRef<str>) -> impl std::fmt::Display {
    format!("{}={value:?}", label.as_ref())
}

#[test]
fn generics_impl_trait_and_where_clauses() {
    fresh(|| {
        assert_eq!(block_on(generic(vec!['a', 'b'], 5u8, [1u8])), 7);
        assert_eq!(generic_sync(3, "x").to_string(), "x=3");
    });
}

/// A parameter named like the macro's internals, and a destructuring pattern.
#[with_context(LEVEL = __ctx)]
async fn no_clash(__ctx: u32, (a, b): (u32, u32), _: String, mut counter: u32) -> u32 {
    counter += 1;
    LEVEL.get().unwrap() + a + b + counter
}

#[test]
fn internal_names_cannot_clash_with_the_users() {
    fresh(|| assert_eq!(block_on(no_clash(1, (2, 3), String::new(), 0)), 7));
}

#[test]
fn the_future_is_send_when_the_body_is() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    fresh(|| {
        let fut = assert_send(handle(Request {
            user: "ada".into(),
            id: 1,
        }));
        assert_eq!(block_on(fut).1, Some(1));
        drop(assert_send(isolated("x")));
    });
}

trait Handler {
    async fn call(&self, input: u32) -> u32;
    fn boxed(&self) -> Pin<Box<dyn Future<Output = u32> + '_>>;
}

struct Doubler;

impl Handler for Doubler {
    #[with_context(LEVEL = input)]
    async fn call(&self, input: u32) -> u32 {
        LEVEL.get().unwrap() * 2
    }

    fn boxed(&self) -> Pin<Box<dyn Future<Output = u32> + '_>> {
        Box::pin(self.call(21))
    }
}

#[test]
fn async_fn_in_a_trait_impl() {
    fresh(|| {
        assert_eq!(block_on(Doubler.call(4)), 8);
        assert_eq!(block_on(Doubler.boxed()), 42);
    });
}

#[test]
fn nested_calls_each_get_their_own_copy() {
    #[with_context(LEVEL = depth)]
    fn recurse(depth: u32) -> Vec<Option<u32>> {
        let mut seen = vec![LEVEL.get()];
        if depth > 0 {
            seen.extend(recurse(depth - 1));
        }
        seen.push(LEVEL.get());
        seen
    }
    fresh(|| {
        assert_eq!(
            recurse(2),
            [Some(2), Some(1), Some(0), Some(0), Some(1), Some(2)]
                .map(Some)
                .map(Option::flatten)
        );
    });
}

/// Hygiene: the expansions name nothing through the prelude or a relative path.
mod hygiene {
    #![no_implicit_prelude]

    mod core {}
    mod std {}
    mod ctx_vars {}

    #[::ctx_vars::context_var]
    pub(super) static HYGIENIC: ::std::string::String;

    #[::ctx_vars::context_var]
    pub(super) static WITH_DEFAULT: u8 = 1;

    #[::ctx_vars::with_context(WITH_DEFAULT = 2)]
    pub(super) async fn read() -> ::std::option::Option<u8> {
        WITH_DEFAULT.get()
    }

    #[::ctx_vars::with_context(WITH_DEFAULT = 3)]
    pub(super) fn read_sync() -> ::std::option::Option<u8> {
        WITH_DEFAULT.get()
    }
}

#[test]
fn expansions_are_hygienic() {
    fresh(|| {
        assert_eq!(hygiene::HYGIENIC.get(), None);
        assert_eq!(block_on(hygiene::read()), Some(2));
        assert_eq!(hygiene::read_sync(), Some(3));
        assert_eq!(hygiene::WITH_DEFAULT.get(), Some(1));
    });
}

#[test]
fn crate_argument_names_a_reexport() {
    mod reexport {
        pub(super) use ::ctx_vars as core_by_another_name;
    }
    #[context_var(crate = reexport::core_by_another_name)]
    static THROUGH: u8 = 9;
    #[with_context(crate = reexport::core_by_another_name, THROUGH = 10)]
    fn through() -> Option<u8> {
        THROUGH.get()
    }
    fresh(|| {
        assert_eq!(THROUGH.get(), Some(9));
        assert_eq!(through(), Some(10));
    });
}

#[test]
fn parameters_live_as_long_as_the_future_like_an_async_fn() {
    use ctx_tests::Tracked;
    use std::sync::Arc;

    #[with_context]
    async fn holds(_named: Tracked, _: Tracked, (_a, _b): (Tracked, u8)) {}

    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let fut = holds(
            Tracked::new(&drops),
            Tracked::new(&drops),
            (Tracked::new(&drops), 1),
        );
        assert_eq!(drops.load(Ordering::SeqCst), 0, "held by the future");
        block_on(fut);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
}
