//! The macros work when ctx-vars is a dependency under another name, and in a crate on
//! the 2021 edition, whose `impl Trait` return types capture lifetimes differently.

use context::{context_var, with_context, Context};

#[context_var(crate = context)]
static USER: String;

#[context_var(crate = context, name = "level")]
static LEVEL: u32 = 3;

#[with_context(crate = context, LEVEL = 4)]
async fn read() -> (Option<String>, Option<u32>) {
    (USER.get(), LEVEL.get())
}

#[with_context(crate = context, USER = name.to_owned())]
fn read_sync(name: &str) -> Option<String> {
    USER.get()
}

struct Service {
    level: u32,
}

impl Service {
    #[with_context(crate = context, LEVEL = self.level)]
    async fn borrowed(&self, suffix: &str) -> String {
        format!("{}{suffix}", LEVEL.get().unwrap())
    }
}

#[with_context(crate = context)]
async fn longest<'a>(a: &'a str, b: &str) -> &'a str {
    if b.len() > a.len() {
        USER.set(b.to_owned());
    }
    a
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn macros_through_a_renamed_dependency() {
    Context::new().run(|| {
        USER.set("ada".into());
        assert_eq!(LEVEL.name(), "level");
        assert_eq!(block_on(read()), (Some("ada".into()), Some(4)));
        assert_eq!(read_sync("grace").as_deref(), Some("grace"));
        assert_eq!(USER.get().as_deref(), Some("ada"));

        let service = Service { level: 9 };
        let suffix = String::from("!");
        assert_eq!(block_on(service.borrowed(&suffix)), "9!");
        assert_eq!(block_on(longest("a", "bb")), "a");
        assert_eq!(USER.get().as_deref(), Some("ada"));
    });
}

#[test]
fn macros_through_a_renamed_dependency_without_a_crate_argument() {
    Context::new().run(|| {
        assert_eq!(ctx_tests_renamed::ATTEMPT.get(), Some(1));
        assert_eq!(ctx_tests_renamed::second_attempt(), Some(2));
        assert_eq!(ctx_tests_renamed::ATTEMPT.get(), Some(1));
    });
}
