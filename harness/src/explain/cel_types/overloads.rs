//! The functions of the API server's CEL environment, with their overloads (the receiver
//! first for member functions), by minor; and the type names an identifier may be.

use super::*;

/// One overload: parameters (the receiver first, for member functions) and the result.
pub(super) struct Sig(pub(super) Vec<Ty>, pub(super) Ty);

pub(super) fn sig(p: &[Ty], r: Ty) -> Sig {
    Sig(p.to_vec(), r)
}

pub(super) const NUMERIC: [Ty; 3] = [Int, Uint, Double];

/// The overloads of a function, by name and call style. `None`: the function is not declared
/// in the API server's environment.
pub(super) fn overloads(name: &str, member: bool, env: Features) -> Option<Vec<Sig>> {
    let same = |ts: &[Ty], r: Ty| -> Vec<Sig> {
        ts.iter()
            .map(|t| sig(&[t.clone(), t.clone()], r.clone()))
            .collect()
    };
    let s = match (name, member) {
        ("!_", false) => vec![sig(&[Bool], Bool)],
        ("-_", false) => vec![sig(&[Int], Int), sig(&[Double], Double)],
        ("_&&_" | "_||_", false) => vec![sig(&[Bool, Bool], Bool)],
        ("@not_strictly_false", false) => vec![sig(&[Bool], Bool)],
        ("_?_:_", false) => vec![sig(&[Bool, A, A], A)],
        ("_==_" | "_!=_", false) => vec![sig(&[A, A], Bool)],
        ("_<_" | "_<=_" | "_>_" | "_>=_", false) => {
            let mut v = same(
                &[Bool, Int, Uint, Double, String, Bytes, Timestamp, Duration],
                Bool,
            );
            for a in NUMERIC {
                for b in NUMERIC {
                    if a != b {
                        v.push(sig(&[a.clone(), b], Bool));
                    }
                }
            }
            v
        }
        ("_+_", false) => {
            let mut v = same(&[Int, Uint, Double, String, Bytes], Int);
            for (s, t) in v.iter_mut().zip([Int, Uint, Double, String, Bytes]) {
                s.1 = t;
            }
            v.push(sig(&[list(A), list(A)], list(A)));
            v.push(sig(&[Timestamp, Duration], Timestamp));
            v.push(sig(&[Duration, Timestamp], Timestamp));
            v.push(sig(&[Duration, Duration], Duration));
            v
        }
        ("_-_", false) => vec![
            sig(&[Int, Int], Int),
            sig(&[Uint, Uint], Uint),
            sig(&[Double, Double], Double),
            sig(&[Timestamp, Timestamp], Duration),
            sig(&[Timestamp, Duration], Timestamp),
            sig(&[Duration, Duration], Duration),
        ],
        ("_*_" | "_/_", false) => vec![
            sig(&[Int, Int], Int),
            sig(&[Uint, Uint], Uint),
            sig(&[Double, Double], Double),
        ],
        ("_%_", false) => vec![sig(&[Int, Int], Int), sig(&[Uint, Uint], Uint)],
        ("_[_]", false) => vec![
            sig(&[list(A), Int], A),
            sig(&[map(A, B), A], B),
            sig(&[opt(list(A)), Int], opt(A)),
            sig(&[opt(map(A, B)), A], opt(B)),
        ],
        ("_[?_]", false) => vec![
            sig(&[list(A), Int], opt(A)),
            sig(&[map(A, B), A], opt(B)),
            sig(&[opt(list(A)), Int], opt(A)),
            sig(&[opt(map(A, B)), A], opt(B)),
        ],
        ("@in", false) => vec![sig(&[A, list(A)], Bool), sig(&[A, map(A, B)], Bool)],
        ("size", _) => vec![
            sig(&[String], Int),
            sig(&[Bytes], Int),
            sig(&[list(A)], Int),
            sig(&[map(A, B)], Int),
        ],
        ("int", false) => [Int, Uint, Double, String, Timestamp]
            .into_iter()
            .map(|t| sig(&[t], Int))
            .collect(),
        ("uint", false) => [Int, Uint, Double, String]
            .into_iter()
            .map(|t| sig(&[t], Uint))
            .collect(),
        ("double", false) => [Int, Uint, Double, String]
            .into_iter()
            .map(|t| sig(&[t], Double))
            .collect(),
        ("string", false) => [Int, Uint, Double, Bool, String, Bytes, Timestamp, Duration]
            .into_iter()
            .map(|t| sig(&[t], String))
            .collect(),
        ("bytes", false) => vec![sig(&[Bytes], Bytes), sig(&[String], Bytes)],
        ("bool", false) => vec![sig(&[Bool], Bool), sig(&[String], Bool)],
        ("dyn", false) => vec![sig(&[A], Dyn)],
        ("type", false) => vec![sig(&[A], Type(Box::new(A)))],
        ("duration", false) => vec![sig(&[String], Duration), sig(&[Duration], Duration)],
        ("timestamp", false) => vec![
            sig(&[String], Timestamp),
            sig(&[Int], Timestamp),
            sig(&[Timestamp], Timestamp),
        ],
        ("matches", _) => vec![sig(&[String, String], Bool)],
        ("contains" | "startsWith" | "endsWith", true) => vec![sig(&[String, String], Bool)],
        (
            "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth" | "getDayOfWeek"
            | "getDayOfYear",
            true,
        ) => vec![sig(&[Timestamp], Int), sig(&[Timestamp, String], Int)],
        ("getHours" | "getMinutes" | "getSeconds" | "getMilliseconds", true) => vec![
            sig(&[Timestamp], Int),
            sig(&[Timestamp, String], Int),
            sig(&[Duration], Int),
        ],
        // The strings extension.
        ("charAt", true) => vec![sig(&[String, Int], String)],
        ("indexOf" | "lastIndexOf", true) => vec![
            sig(&[String, String], Int),
            sig(&[String, String, Int], Int),
            sig(&[list(A), A], Int),
        ],
        ("lowerAscii" | "upperAscii" | "trim", true) => vec![sig(&[String], String)],
        ("replace", true) => vec![
            sig(&[String, String, String], String),
            sig(&[String, String, String, Int], String),
        ],
        ("split", true) => vec![
            sig(&[String, String], list(String)),
            sig(&[String, String, Int], list(String)),
        ],
        ("substring", true) => vec![
            sig(&[String, Int], String),
            sig(&[String, Int, Int], String),
        ],
        ("join", true) => vec![
            sig(&[list(String)], String),
            sig(&[list(String), String], String),
        ],
        ("format", true) => vec![sig(&[String, list(Dyn)], String)],
        ("strings.quote", false) => vec![sig(&[String], String)],
        // Kubernetes' own libraries.
        ("url", false) => vec![sig(&[String], URL)],
        ("isURL" | "isIP" | "isCIDR" | "isQuantity", false) => vec![sig(&[String], Bool)],
        ("getScheme" | "getHost" | "getHostname" | "getPort" | "getEscapedPath", true) => {
            vec![sig(&[URL], String)]
        }
        ("getQuery", true) => vec![sig(&[URL], map(String, list(String)))],
        ("ip", false) => vec![sig(&[String], IP)],
        ("ip", true) => vec![sig(&[CIDR], IP)],
        ("ip.isCanonical", false) => vec![sig(&[String], Bool)],
        ("family", true) => vec![sig(&[IP], Int)],
        (
            "isUnspecified"
            | "isLoopback"
            | "isLinkLocalMulticast"
            | "isLinkLocalUnicast"
            | "isGlobalUnicast",
            true,
        ) => vec![sig(&[IP], Bool)],
        ("cidr", false) => vec![sig(&[String], CIDR)],
        ("containsIP", true) => vec![sig(&[CIDR, String], Bool), sig(&[CIDR, IP], Bool)],
        ("containsCIDR", true) => vec![sig(&[CIDR, String], Bool), sig(&[CIDR, CIDR], Bool)],
        ("masked", true) => vec![sig(&[CIDR], CIDR)],
        ("prefixLength", true) => vec![sig(&[CIDR], Int)],
        ("quantity", false) => vec![sig(&[String], QUANTITY)],
        ("isInteger", true) => vec![sig(&[QUANTITY], Bool)],
        ("asInteger" | "sign", true) => vec![sig(&[QUANTITY], Int)],
        ("asApproximateFloat", true) => vec![sig(&[QUANTITY], Double)],
        ("add" | "sub", true) => vec![
            sig(&[QUANTITY, QUANTITY], QUANTITY),
            sig(&[QUANTITY, Int], QUANTITY),
        ],
        ("isGreaterThan" | "isLessThan", true) => vec![
            sig(&[QUANTITY, QUANTITY], Bool),
            sig(&[SEMVER, SEMVER], Bool),
        ],
        ("compareTo", true) => vec![sig(&[QUANTITY, QUANTITY], Int), sig(&[SEMVER, SEMVER], Int)],
        ("semver", false) if env.semver => {
            vec![sig(&[String], SEMVER), sig(&[String, Bool], SEMVER)]
        }
        ("isSemver", false) if env.semver => vec![sig(&[String], Bool), sig(&[String, Bool], Bool)],
        ("major" | "minor" | "patch", true) if env.semver => vec![sig(&[SEMVER], Int)],
        // cel-go's lists extension (version 3).
        ("lists.range", false) if env.lists_ext => vec![sig(&[Int], list(Int))],
        ("slice", true) if env.lists_ext => vec![sig(&[list(A), Int, Int], list(A))],
        ("flatten", true) if env.lists_ext => {
            vec![
                sig(&[list(list(A))], list(A)),
                sig(&[list(Dyn), Int], list(Dyn)),
            ]
        }
        ("distinct" | "reverse" | "sort", true) if env.lists_ext => {
            vec![sig(&[list(A)], list(A))]
        }
        ("first" | "last", true) => vec![sig(&[list(A)], opt(A))],
        ("find", true) => vec![sig(&[String, String], String)],
        ("findAll", true) => vec![
            sig(&[String, String], list(String)),
            sig(&[String, String, Int], list(String)),
        ],
        ("sum" | "min" | "max", true) => vec![sig(&[list(A)], A)],
        ("isSorted", true) => vec![sig(&[list(A)], Bool)],
        ("sets.contains" | "sets.equivalent" | "sets.intersects", false) => {
            vec![sig(&[list(A), list(A)], Bool)]
        }
        // Optional types.
        ("optional.of" | "optional.ofNonZeroValue", false) => vec![sig(&[A], opt(A))],
        ("optional.none", false) => vec![sig(&[], opt(Dyn))],
        ("optional.unwrap", false) => vec![sig(&[list(opt(A))], list(A))],
        ("unwrapOpt", true) => vec![sig(&[list(opt(A))], list(A))],
        ("hasValue", true) => vec![sig(&[opt(A)], Bool)],
        ("value", true) => vec![sig(&[opt(A)], A)],
        ("orValue", true) => vec![sig(&[opt(A), A], A)],
        ("or", true) => vec![sig(&[opt(A), opt(A)], opt(A))],
        _ => return None,
    };
    Some(s)
}

/// Names a bare identifier may take as a type value (`type(x) == string`).
pub(super) fn type_ident(name: &str) -> Option<Ty> {
    Some(match name {
        "bool" => Bool,
        "int" => Int,
        "uint" => Uint,
        "double" => Double,
        "string" => String,
        "bytes" => Bytes,
        "list" => list(Dyn),
        "map" => map(Dyn, Dyn),
        "null_type" => Null,
        "type" => Type(Box::new(Dyn)),
        "dyn" => Dyn,
        "google.protobuf.Timestamp" => Timestamp,
        "google.protobuf.Duration" => Duration,
        _ => return None,
    })
    .map(|t| Type(Box::new(t)))
}
