//! The data side of the loader: manifests, box-aware text, augmentation plans and the threaded
//! batch pipeline, and the pre-decoded cache it can read instead of decoding.

/// An option's enum read from and written as its name (`"float32"`, `"reflect"`): `name()`,
/// `FromStr` (an unknown name is an error naming the option and its choices) and serde through
/// the name (`#[serde(try_from = "String", into = "&'static str")]` on the enum).
macro_rules! named_enum {
    ($ty:ident, $option:literal, [$($name:literal => $variant:ident),+ $(,)?]) => {
        impl $ty {
            /// The name this value is read from and written as.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::error::Error;
            fn from_str(s: &str) -> crate::error::Result<Self> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    o => Err(crate::error::Error::invalid(format!(
                        "{} must be {}, not {o:?}",
                        $option,
                        crate::data::choices(&[$($name),+])
                    ))),
                }
            }
        }

        impl TryFrom<String> for $ty {
            type Error = crate::error::Error;
            fn try_from(s: String) -> crate::error::Result<Self> {
                s.parse()
            }
        }

        impl From<$ty> for &'static str {
            fn from(v: $ty) -> &'static str {
                v.name()
            }
        }
    };
}

/// `'a' or 'b'`, `'a', 'b' or 'c'`: an option's choices in an error message.
pub(crate) fn choices(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

pub mod augment;
pub mod batch;
pub mod box_format;
pub mod box_mask;
pub mod cache;
pub mod cache_remote;
pub mod manifest;
pub mod manifest_arrow;
pub mod sample;
pub mod stream;
pub mod tasks;
