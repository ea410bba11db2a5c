//! A direct reader for the review admission sees most: a Pod CREATE. It reads the same fields into the
//! same types as the serde reader ([`crate::review`] with [`crate::lean`]), without serde's visitors,
//! in one pass over the bytes.
//!
//! It answers only when it is sure to answer exactly as serde would; on anything else it returns `None`
//! and the serde reader reads the review from the start, so errors, and every review it does not cover,
//! are reported by serde. It gives up on:
//! - a review of another kind or operation, or whose `object` comes before its `kind` or `operation`;
//! - a non-null `oldObject`, a null `request`;
//! - a string it keeps (a key, a name, an image...) with an escape sequence (strings it skips may have
//!   any valid escape);
//! - a field named twice where serde's derived readers refuse it (and, to stay simple, in the
//!   `k8s-openapi` types and the review, where the last one would win);
//! - a number that is not a plain `i32` where an `i32` is read;
//! - nesting deeper than [`MAX_DEPTH`];
//! - anything that is not valid JSON, or of the wrong JSON type.
//!
//! Giving up late costs the part already read: a pod applied directly with `kubectl apply` carries its
//! last applied configuration, an annotation full of `\"`, so it is read partly here and then by serde
//! (still at most about twice serde's own work). Pods made by controllers have no such annotation.
//!
//! The tests hold it to that: on every fixture and on mutated reviews, whenever it answers, its answer
//! equals the serde reader's; and on the pod fixtures it does answer.

use std::collections::BTreeMap;

use airlock_crds::v1alpha1::WorkloadKind;
use k8s_openapi::api::core::v1::ContainerPort;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde::de::IgnoredAny;

use crate::lean::{AppEnvNames, LeanContainer, LeanPodSpec, Meta, Named, Object as LeanObject};
use crate::mutate::APP_ENV;
use crate::review::{Object, RawRequest, RawReview, Route};
use crate::workload::Workload;

/// Objects and arrays nested deeper than this are left to serde (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// Reads a Pod CREATE review; `None` when the serde reader must read it instead.
pub(crate) fn review(route: Route, text: &str) -> Option<RawReview<'_>> {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let review = reader.review(route)?;
    reader.ws();
    (reader.at == reader.bytes.len()).then_some(review)
}

/// Marks a field as read; `None` (give up) when it was read before.
fn once(seen: &mut u32, bit: u32) -> Option<()> {
    let mask = 1 << bit;
    if *seen & mask != 0 {
        return None;
    }
    *seen |= mask;
    Some(())
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Consumes `null` when it comes next.
    fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.bytes[self.at..].starts_with(b"null") {
            self.at += 4;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// Moves to the next byte a string gives a meaning to: a quote, a backslash or a control character
    /// (which JSON does not allow in a string), eight bytes at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        // Bytes of `word` that are zero: exact for the lowest one, which is the one used.
        let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
        while let Some(chunk) = self.bytes.get(self.at..).and_then(<[u8]>::first_chunk::<8>) {
            let word = u64::from_le_bytes(*chunk);
            let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
            let found =
                control | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')));
            if found != 0 {
                self.at += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.at += 8;
        }
        while let Some(&byte) = self.bytes.get(self.at) {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                return;
            }
            self.at += 1;
        }
    }

    /// A string without escape sequences, borrowed from the text.
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        self.skip_plain();
        if *self.bytes.get(self.at)? != b'"' {
            return None;
        }
        // Both ends are at an ASCII quote of valid UTF-8, so the slice is on character boundaries.
        let text = self.text.get(start..self.at)?;
        self.at += 1;
        Some(text)
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    fn opt_bool(&mut self) -> Option<Option<bool>> {
        if self.null() {
            return Some(None);
        }
        self.bool().map(Some)
    }

    /// An integer in `i32`'s range written as serde reads one: `-?(0|[1-9][0-9]*)`, not followed by a
    /// fraction or an exponent (serde reads those as floats, which an `i32` refuses).
    fn i32(&mut self) -> Option<i32> {
        self.ws();
        let negative = self.bytes.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        let mut value: i64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.bytes.get(self.at).copied() {
            value = value * 10 + i64::from(digit - b'0');
            if value > i64::from(i32::MAX) + 1 {
                return None;
            }
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        // serde reads `-0` as a float (minus zero), which an `i32` refuses.
        if matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E')) || (negative && value == 0) {
            return None;
        }
        i32::try_from(if negative { -value } else { value }).ok()
    }

    fn opt_i32(&mut self) -> Option<Option<i32>> {
        if self.null() {
            return Some(None);
        }
        self.i32().map(Some)
    }

    /// Skips a string, checking it as serde does: no control characters, valid escapes.
    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            self.skip_plain();
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    self.at += 1;
                    match *self.bytes.get(self.at)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// Skips a number written as JSON allows: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> Option<()> {
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match *self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// Skips any value, checking it is valid JSON.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.object(|reader, _| reader.skip()),
            b'[' => self.array(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.skip_number(),
        }
    }

    /// How many values an array has (skipping them); `None` for `null`.
    fn count(&mut self) -> Option<Option<Vec<IgnoredAny>>> {
        if self.null() {
            return Some(None);
        }
        let mut n = 0;
        self.array(|reader| {
            n += 1;
            reader.skip()
        })?;
        Some(Some(vec![IgnoredAny; n]))
    }

    fn nest(&mut self, open: u8) -> Option<()> {
        self.eat(open)?;
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Reads an object, calling `field` with each key once the reader stands before its value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.nest(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                let key = self.str()?;
                self.eat(b':')?;
                field(self, key)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.nest(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                element(self)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// `null`, or an array of what `element` reads.
    fn opt_list<T>(&mut self, mut element: impl FnMut(&mut Self) -> Option<T>) -> Option<Option<Vec<T>>> {
        if self.null() {
            return Some(None);
        }
        let mut list = Vec::new();
        self.array(|reader| {
            list.push(element(reader)?);
            Some(())
        })?;
        Some(Some(list))
    }

    /// `null`, or an object of strings (a later key replaces an earlier one, as in serde's map).
    fn opt_string_map(&mut self) -> Option<Option<BTreeMap<String, String>>> {
        if self.null() {
            return Some(None);
        }
        let mut map = BTreeMap::new();
        self.object(|reader, key| {
            map.insert(key.to_owned(), reader.string()?);
            Some(())
        })?;
        Some(Some(map))
    }

    /// Reads an object whose known fields are `names`: `field` is called with the index of each one
    /// found (a second one with the same name gives up, as serde's derived readers refuse it), and any
    /// other field is skipped.
    fn fields(
        &mut self,
        names: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        let mut seen = 0;
        self.object(|reader, key| match names.iter().position(|name| *name == key) {
            Some(i) => {
                once(&mut seen, i as u32)?;
                field(reader, i)
            }
            None => reader.skip(),
        })
    }

    fn review(&mut self, route: Route) -> Option<RawReview<'a>> {
        let (mut api_version, mut kind, mut request) = (None, None, None);
        self.fields(&["apiVersion", "kind", "request"], |reader, field| {
            match field {
                0 => api_version = reader.opt_string()?,
                1 => kind = reader.opt_string()?,
                _ => request = Some(reader.request(route)?),
            }
            Some(())
        })?;
        Some(RawReview {
            api_version,
            kind,
            request: Some(request?),
        })
    }

    fn request(&mut self, route: Route) -> Option<RawRequest<'a>> {
        const FIELDS: [&str; 10] = crate::review::REQUEST_FIELDS;
        let (mut uid, mut kind, mut sub_resource, mut name, mut namespace) = (None, None, None, None, None);
        let (mut operation, mut object) = (None, None);
        let (mut resource, mut user_info) = (false, false);
        self.fields(&FIELDS, |reader, field| {
            match field {
                0 => uid = Some(reader.string()?),
                1 => kind = Some(reader.gvk()?),
                2 => {
                    reader.skip()?;
                    resource = true;
                }
                3 => sub_resource = reader.opt_string()?,
                4 => name = Some(reader.string()?),
                5 => namespace = reader.opt_string()?,
                6 => {
                    // The only operation read here; the others are valid, and serde reads them.
                    (reader.str()? == "CREATE").then_some(())?;
                    operation = Some(Operation::Create);
                }
                7 => {
                    reader.skip()?;
                    user_info = true;
                }
                8 => {
                    // Read as it arrives only when the review said first what it is, as serde's does.
                    let pod = kind
                        .as_ref()
                        .is_some_and(|k: &GroupVersionKind| k.group.is_empty() && k.kind == "Pod");
                    (pod && operation.is_some()).then_some(())?;
                    object = Some(if reader.null() {
                        Object::Absent
                    } else {
                        let pod = reader.pod()?;
                        match route {
                            Route::Mutate => Object::Pod(Box::new(crate::lean::pod_of(pod))),
                            Route::Validate => Object::Workload(Box::new(Workload::from_lean(
                                WorkloadKind::Pod,
                                crate::lean::pod_workload(pod),
                            ))),
                        }
                    });
                }
                _ => reader.null().then_some(())?,
            }
            Some(())
        })?;
        // `resource` and `userInfo` are required, as in kube's type.
        (resource && user_info).then_some(())?;
        Some(RawRequest {
            uid: uid?,
            kind: kind?,
            sub_resource,
            name: name.unwrap_or_default(),
            namespace,
            operation: operation?,
            object: object.unwrap_or(Object::Absent),
            old_object: None,
        })
    }

    fn gvk(&mut self) -> Option<GroupVersionKind> {
        let (mut group, mut version, mut kind) = (None, None, None);
        self.fields(&["group", "version", "kind"], |reader, field| {
            let value = Some(reader.string()?);
            match field {
                0 => group = value,
                1 => version = value,
                _ => kind = value,
            }
            Some(())
        })?;
        Some(GroupVersionKind {
            group: group?,
            version: version?,
            kind: kind?,
        })
    }

    /// A Pod, checked as serde's reader checks it: a present `apiVersion` and `kind` must be `v1` `Pod`.
    fn pod(&mut self) -> Option<LeanObject<LeanPodSpec>> {
        let mut object = LeanObject {
            api_version: None,
            kind: None,
            metadata: None,
            spec: None,
        };
        self.fields(&["apiVersion", "kind", "metadata", "spec"], |reader, field| {
            match field {
                0 => object.api_version = reader.opt_string()?,
                1 => object.kind = reader.opt_string()?,
                2 => object.metadata = if reader.null() { None } else { Some(reader.meta()?) },
                _ => {
                    object.spec = if reader.null() {
                        None
                    } else {
                        Some(reader.pod_spec()?)
                    }
                }
            }
            Some(())
        })?;
        let expected =
            |found: &Option<String>, expected: &str| found.as_deref().is_none_or(|f| f == expected);
        (expected(&object.api_version, "v1") && expected(&object.kind, "Pod")).then_some(object)
    }

    fn meta(&mut self) -> Option<Meta> {
        const FIELDS: [&str; 7] = [
            "name",
            "generateName",
            "namespace",
            "labels",
            "annotations",
            "ownerReferences",
            "deletionTimestamp",
        ];
        let mut meta = Meta::default();
        self.fields(&FIELDS, |reader, field| {
            match field {
                0 => meta.name = reader.opt_string()?,
                1 => meta.generate_name = reader.opt_string()?,
                2 => meta.namespace = reader.opt_string()?,
                3 => meta.labels = reader.opt_string_map()?,
                4 => meta.annotations = reader.opt_string_map()?,
                5 => meta.owner_references = reader.opt_list(Self::owner)?,
                _ => {
                    meta.deletion_timestamp = if reader.null() {
                        None
                    } else {
                        reader.skip()?;
                        Some(IgnoredAny)
                    }
                }
            }
            Some(())
        })?;
        Some(meta)
    }

    fn owner(&mut self) -> Option<OwnerReference> {
        const FIELDS: [&str; 6] = [
            "apiVersion",
            "kind",
            "name",
            "uid",
            "controller",
            "blockOwnerDeletion",
        ];
        let mut owner = OwnerReference::default();
        self.fields(&FIELDS, |reader, field| {
            match field {
                0 => owner.api_version = reader.opt_string()?.unwrap_or_default(),
                1 => owner.kind = reader.opt_string()?.unwrap_or_default(),
                2 => owner.name = reader.opt_string()?.unwrap_or_default(),
                3 => owner.uid = reader.opt_string()?.unwrap_or_default(),
                4 => owner.controller = reader.opt_bool()?,
                _ => owner.block_owner_deletion = reader.opt_bool()?,
            }
            Some(())
        })?;
        Some(owner)
    }

    fn pod_spec(&mut self) -> Option<LeanPodSpec> {
        const FIELDS: [&str; 5] = [
            "containers",
            "initContainers",
            "ephemeralContainers",
            "hostNetwork",
            "volumes",
        ];
        let mut spec = LeanPodSpec::default();
        self.fields(&FIELDS, |reader, field| {
            match field {
                0 => spec.containers = reader.opt_list(Self::container)?,
                1 => spec.init_containers = reader.opt_list(Self::container)?,
                2 => spec.ephemeral_containers = reader.opt_list(Self::named)?,
                3 => spec.host_network = reader.opt_bool()?,
                _ => spec.volumes = reader.count()?,
            }
            Some(())
        })?;
        Some(spec)
    }

    fn named(&mut self) -> Option<Named> {
        let mut name = None;
        self.fields(&["name"], |reader, _| {
            name = reader.opt_string()?;
            Some(())
        })?;
        Some(Named { name })
    }

    fn container(&mut self) -> Option<LeanContainer> {
        const FIELDS: [&str; 7] = ["name", "image", "command", "args", "ports", "env", "envFrom"];
        let mut c = LeanContainer {
            name: None,
            image: None,
            command: None,
            args: None,
            ports: None,
            env: None,
            env_from: None,
        };
        self.fields(&FIELDS, |reader, field| {
            match field {
                0 => c.name = reader.opt_string()?,
                1 => c.image = reader.opt_string()?,
                2 => c.command = reader.opt_list(Self::string)?,
                3 => c.args = reader.opt_list(Self::string)?,
                4 => c.ports = reader.opt_list(Self::port)?,
                5 => c.env = reader.env()?,
                _ => c.env_from = reader.count()?,
            }
            Some(())
        })?;
        Some(c)
    }

    /// An `env` list, kept as the positions in [`APP_ENV`] of its names.
    fn env(&mut self) -> Option<Option<AppEnvNames>> {
        if self.null() {
            return Some(None);
        }
        let mut names = Vec::new();
        self.array(|reader| {
            reader.fields(&["name"], |reader, _| {
                if !reader.null() {
                    let name = reader.str()?;
                    if let Some(i) = APP_ENV.iter().position(|(known, _)| *known == name) {
                        names.push(i);
                    }
                }
                Some(())
            })
        })?;
        Some(Some(AppEnvNames(names)))
    }

    fn port(&mut self) -> Option<ContainerPort> {
        const FIELDS: [&str; 5] = ["containerPort", "hostIP", "hostPort", "name", "protocol"];
        let mut port = ContainerPort::default();
        self.fields(&FIELDS, |reader, field| {
            match field {
                0 => port.container_port = reader.opt_i32()?.unwrap_or_default(),
                1 => port.host_ip = reader.opt_string()?,
                2 => port.host_port = reader.opt_i32()?,
                3 => port.name = reader.opt_string()?,
                _ => port.protocol = reader.opt_string()?,
            }
            Some(())
        })?;
        Some(port)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use crate::review::{Reading, read_review};

    fn fixtures() -> Vec<(String, Vec<u8>)> {
        let dir = format!("{}/tests/data/reviews", env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(p).unwrap(),
                )
            })
            .collect()
    }

    /// Whenever the direct reader answers, serde's one-pass read answers the same.
    fn agrees(route: Route, body: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(body) else {
            return false;
        };
        let Some(direct) = review(route, text) else {
            return false;
        };
        let serde = read_review(route, body, Reading::OnePass)
            .unwrap_or_else(|e| panic!("the direct reader read what serde refuses ({e}): {text}"));
        assert_eq!(format!("{direct:?}"), format!("{serde:?}"), "{text}");
        true
    }

    #[test]
    fn it_reads_pod_creates_as_serde_does_and_leaves_the_rest_to_serde() {
        for (name, body) in fixtures() {
            for route in [Route::Mutate, Route::Validate] {
                let read = agrees(route, &body);
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let request = &value["request"];
                let pod_create = request["kind"]["group"] == "" && request["kind"]["kind"] == "Pod";
                let pod_create = pod_create && request["operation"] == "CREATE";
                assert_eq!(read, pod_create, "{name} on {route:?}");
            }
        }
    }

    /// The pod fixture an API server would send for a ReplicaSet's pod, with `edit` applied to its text.
    fn replicaset_pod(edit: impl Fn(&str) -> String) -> Vec<u8> {
        let (_, body) = fixtures()
            .into_iter()
            .find(|(name, _)| name == "pod-create-replicaset.json")
            .unwrap();
        edit(std::str::from_utf8(&body).unwrap()).into_bytes()
    }

    #[test]
    fn escapes_in_skipped_strings_are_read_and_in_kept_strings_left_to_serde() {
        // The fixture's env value has `\"` and Go's `\u003c`: skipped, so the direct reader answers.
        let body = replicaset_pod(str::to_owned);
        assert!(std::str::from_utf8(&body).unwrap().contains(r#"\u003cb\u003e"#));
        assert!(agrees(Route::Mutate, &body));
        // An escape in a label key or value, an image, an env name: serde reads those.
        for (from, to) in [
            (r#""app":"llm""#, r#""a\u0070p":"llm""#),
            (r#""app":"llm""#, r#""app":"l\/lm""#),
            (r#""image":"registry"#, r#""image":"\u0072egistry"#),
            (r#""name":"OPENAI_BASE_URL""#, r#""name":"OPENAI\u005fBASE_URL""#),
        ] {
            let body = replicaset_pod(|text| text.replacen(from, to, 1));
            assert!(!agrees(Route::Mutate, &body), "{to}");
            let serde = read_review(Route::Mutate, &body, Reading::OnePass).unwrap();
            assert!(matches!(serde.request.unwrap().object, Object::Pod(_)), "{to}");
        }
    }

    #[test]
    fn what_serde_refuses_or_reads_otherwise_is_left_to_serde() {
        let cases: [(&str, &str); 13] = [
            // A field named twice where serde's derived reader refuses it.
            (r#""name":"server","#, r#""name":"server","name":"again","#),
            // A port that is not a plain i32.
            (r#""containerPort":8000"#, r#""containerPort":8000.0"#),
            (r#""containerPort":8000"#, r#""containerPort":08000"#),
            (r#""containerPort":8000"#, r#""containerPort":2147483648"#),
            (r#""containerPort":8000"#, r#""containerPort":-0"#),
            // The object before the operation: serde keeps it raw.
            (r#""operation":"CREATE","#, ""),
            // Another operation.
            (r#""operation":"CREATE""#, r#""operation":"UPDATE""#),
            // A non-null oldObject.
            (r#""oldObject":null"#, r#""oldObject":{}"#),
            // Invalid JSON in a skipped place, and a control character in a skipped string.
            (r#""priority":0"#, r#""priority":-"#),
            (r#""path":"token""#, "\"path\":\"to\tken\""),
            (r#""path":"token""#, r#""path":"to\xken""#),
            // A trailing comma, and text after the review.
            (r#""preemptionPolicy":"#, r#","preemptionPolicy":"#),
            (r#""kind":"AdmissionReview","#, r#""kind":"AdmissionReview",,"#),
        ];
        for (from, to) in cases {
            let body = replicaset_pod(|text| {
                assert!(text.contains(from), "{from}");
                text.replacen(from, to, 1)
            });
            assert!(!agrees(Route::Mutate, &body), "{to}");
        }
        let body = replicaset_pod(|text| format!("{text} x"));
        assert!(!agrees(Route::Validate, &body));
        // Nesting deeper than the reader goes, in a skipped field.
        let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
        let body =
            replicaset_pod(|text| text.replacen(r#""priority":0"#, &format!(r#""priority":{deep}"#), 1));
        assert!(!agrees(Route::Mutate, &body));
        assert!(read_review(Route::Mutate, &body, Reading::OnePass).is_ok());
    }

    #[test]
    fn nulls_and_defaults_read_as_serde_reads_them() {
        for (from, to) in [
            (
                r#""creationTimestamp":null"#,
                r#""deletionTimestamp":"2026-11-20T10:00:00Z""#,
            ),
            (r#""creationTimestamp":null"#, r#""deletionTimestamp":null"#),
            (r#""labels":{"#, r#""labels":null,"x":{"#),
            (r#""hostPort":19090"#, r#""hostPort":null"#),
            (r#""containerPort":8000"#, r#""containerPort":null"#),
            (r#""controller":true"#, r#""controller":null"#),
            (r#""name":"POD_IP""#, r#""name":null"#),
            (
                r#""envFrom":[{"configMapRef":{"name":"llm-config"}}]"#,
                r#""envFrom":null"#,
            ),
            (r#""app":"llm","#, r#""app":"first","app":"llm","#),
            (r#""kind":"Pod","metadata""#, r#""metadata""#),
            (
                r#""status":{}"#,
                r#""status":{"x":[1,-2.5e+3,true,false,null,"\ud83d\ude00"]}"#,
            ),
        ] {
            let body = replicaset_pod(|text| {
                assert!(text.contains(from), "{from}");
                text.replacen(from, to, 1)
            });
            for route in [Route::Mutate, Route::Validate] {
                assert!(agrees(route, &body), "{to} on {route:?}");
            }
        }
    }

    #[test]
    fn the_word_at_a_time_search_stops_where_a_byte_at_a_time_search_does() {
        bolero::check!()
            .with_test_time(Duration::from_millis(500))
            .with_type::<(Vec<u8>, u8)>()
            .for_each(|(bytes, from)| {
                let text = String::from_utf8_lossy(bytes);
                let from = usize::from(*from).min(text.len());
                let mut reader = Reader {
                    text: &text,
                    bytes: text.as_bytes(),
                    at: from,
                    depth: 0,
                };
                reader.skip_plain();
                let expected = text.as_bytes()[from..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .map_or(text.len(), |i| from + i);
                assert_eq!(reader.at, expected, "{text:?} from {from}");
            });
    }

    /// The pod fixtures with a few bytes replaced, removed or duplicated: wherever the direct reader
    /// still answers, it answers as serde does.
    #[test]
    fn fuzz_the_direct_reader_against_serde() {
        let seeds: Vec<Vec<u8>> = fixtures()
            .into_iter()
            .filter(|(name, _)| name.starts_with("pod-create"))
            .map(|(_, body)| body)
            .collect();
        bolero::check!()
            .with_test_time(Duration::from_secs(2))
            .with_type::<(u8, bool, Vec<(u32, u8, u8)>)>()
            .for_each(|(which, mutate, edits)| {
                let mut input = seeds[usize::from(*which) % seeds.len()].clone();
                for (at, op, byte) in edits {
                    if input.is_empty() {
                        break;
                    }
                    let at = *at as usize % input.len();
                    // Bytes JSON gives a meaning to, more often than chance would.
                    const JSON: &[u8] = b"{}[],:\"\\ 0-.eEtfnu9";
                    let byte = if byte % 2 == 0 {
                        JSON[usize::from(byte / 2) % JSON.len()]
                    } else {
                        *byte
                    };
                    match op % 4 {
                        0 => input[at] = byte,
                        1 => {
                            input.remove(at);
                        }
                        2 => input.insert(at, byte),
                        _ => {
                            let tail = input[at..].to_vec();
                            input.extend_from_slice(&tail[..tail.len().min(64)]);
                        }
                    }
                }
                let route = if *mutate { Route::Mutate } else { Route::Validate };
                agrees(route, &input);
            });
    }
}
