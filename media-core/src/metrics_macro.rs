//! One declaration per metric: its field, its type and its help text (the
//! field's doc comment), from which the struct, its `Default` and its
//! registration are made. Crates that use it depend on `prometheus-client`
//! themselves; this crate does not need it for the macro.

/// Declares a struct of Prometheus metrics and its `register`, with each
/// metric's name (the field) and help text (its doc comment) written once.
/// A field whose type has no `Default` (a histogram, a family of them) is
/// given its value with `= expr`; a metric named otherwise than its field
/// says so with `as "name"`.
///
/// ```ignore
/// media_core::metrics! {
///     /// The hub's metrics.
///     pub struct HubMetrics under "hub" {
///         /// Streams with a publisher
///         pub live_streams: Gauge,
///         /// Seconds a failover stalled players
///         pub stall as "stall_seconds": Histogram = Histogram::new([0.1, 1.0]),
///     }
/// }
/// ```
#[macro_export]
macro_rules! metrics {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $name:ident under $prefix:literal {
            $(
                #[doc = $help:literal]
                $(#[doc = $more:literal])*
                $fvis:vis $field:ident $(as $metric:literal)? : $ty:ty $(= $init:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug)]
        $vis struct $name {
            $(
                #[doc = $help]
                $(#[doc = $more])*
                $fvis $field: $ty,
            )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $crate::__metric_value!($ty $(, $init)?), )*
                }
            }
        }

        impl $name {
            /// Adds these metrics to `registry` under their prefix; each
            /// metric's help is its field's doc comment.
            pub fn register(&self, registry: &mut ::prometheus_client::registry::Registry) {
                let r = registry.sub_registry_with_prefix($prefix);
                $(
                    r.register(
                        $crate::__metric_name!($field $(, $metric)?),
                        concat!($help $(, $more)*).trim(),
                        self.$field.clone(),
                    );
                )*
            }
        }
    };
}

/// A metric field's initial value: its `Default`, or the expression given.
#[doc(hidden)]
#[macro_export]
macro_rules! __metric_value {
    ($ty:ty) => {
        <$ty as ::core::default::Default>::default()
    };
    ($ty:ty, $init:expr) => {
        $init
    };
}

/// A metric's name: its field's, or the one given.
#[doc(hidden)]
#[macro_export]
macro_rules! __metric_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $metric:literal) => {
        $metric
    };
}
