//! Test bodies run on several backends: one `#[tokio::test]` per backend around an
//! `async fn body(backend)`, named `body::on_<backend>`.

/// One `#[tokio::test]` per backend around a test body `async fn $name(backend)`: a module
/// `$name` holding `fn $variant() { $name($backend).await }` for each pair, so the tests
/// read `delivery::a_direct_message_crosses_nodes_once::on_redis_cluster` and
/// `cargo test a_direct_message` runs every variant. Attributes before the name (the
/// runtime flavor) go on every variant; the default is `#[tokio::test]`.
///
/// ```text
/// backend_tests!(a_direct_message_crosses_nodes_once: on_one_redis => Redis::One, on_redis_cluster => Redis::Cluster);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($name:ident: $($variant:ident => $backend:expr),+ $(,)?) => {
        $crate::backend_tests!(#[tokio::test] $name: $($variant => $backend),+);
    };
    (#[$attr:meta] $name:ident: $($variant:ident => $backend:expr),+ $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$attr]
                async fn $variant() {
                    super::$name($backend).await
                }
            )+
        }
    };
}

/// [`backend_tests!`] on one `redis-server` (`…::on_one_redis`) and on a Redis Cluster
/// (`…::on_redis_cluster`): the body takes a [`cluster::Redis`].
#[macro_export]
macro_rules! on_both_redis {
    ($(#[$attr:meta])? $name:ident) => {
        $crate::backend_tests!($(#[$attr])? $name:
            on_one_redis => $crate::cluster::Redis::One,
            on_redis_cluster => $crate::cluster::Redis::Cluster,
        );
    };
}
