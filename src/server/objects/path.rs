//! `s3://bucket/prefix` as a submission writes it: the bucket checked against S3's naming
//! rules before any request is made, the rest kept as a key prefix (pure).

/// The longest S3 key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// A bucket and a key prefix (empty: the whole bucket). A prefix is a prefix of keys as
/// text, as S3 lists them: `s3://b/images/img` finds `images/img_1.png`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Path {
    pub bucket: String,
    pub prefix: String,
}

impl S3Path {
    /// Parses `s3://bucket[/prefix]`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<S3Path, String> {
        let Some(rest) = text.strip_prefix("s3://") else {
            return Err("expected s3://bucket/key or s3://bucket/prefix".to_string());
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("the bucket is missing; write s3://bucket/key".to_string());
        }
        if let Some(why) = bucket_problem(bucket) {
            return Err(format!("bucket {bucket:?} {why}"));
        }
        if prefix.len() > MAX_KEY_BYTES {
            return Err(format!(
                "the key is {} bytes; an S3 key is at most {MAX_KEY_BYTES} bytes",
                prefix.len()
            ));
        }
        if prefix.chars().any(char::is_control) {
            return Err("the key holds a control character".to_string());
        }
        Ok(S3Path {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// What breaks S3's rules for general purpose bucket names, if anything: 3 to 63 lower-case
/// letters, digits, dots and hyphens, starting and ending with a letter or digit, no two
/// dots in a row, not an IP address, none of the reserved prefixes and suffixes.
pub fn bucket_problem(name: &str) -> Option<String> {
    if !(3..=63).contains(&name.len()) {
        return Some(format!(
            "is {} characters long; a bucket name has 3 to 63",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Some(format!(
            "holds {c:?}; a bucket name has only lower-case letters, digits, dots and hyphens"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Some("must start and end with a letter or a digit".to_string());
    }
    if name.contains("..") {
        return Some("has two dots in a row".to_string());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("is an IP address, which S3 does not allow as a bucket name".to_string());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Some(format!("starts with {prefix:?}, which S3 reserves"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Some(format!("ends with {suffix:?}, which S3 reserves"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_a_checked_bucket_and_a_prefix() {
        let p = S3Path::parse("s3://my-bucket.data/images/img").unwrap();
        assert_eq!(
            (p.bucket.as_str(), p.prefix.as_str()),
            ("my-bucket.data", "images/img")
        );
        assert_eq!(S3Path::parse("s3://abc").unwrap().prefix, "");
        assert_eq!(S3Path::parse("s3://abc/").unwrap().prefix, "");
        for (bad, why) in [
            ("https://abc/x", "expected s3://"),
            ("s3:///x", "bucket is missing"),
            ("s3://ab/x", "3 to 63"),
            ("s3://My-Bucket/x", "lower-case"),
            ("s3://abc_d/x", "lower-case"),
            ("s3://-abc/x", "start and end"),
            ("s3://abc./x", "start and end"),
            ("s3://a..b/x", "two dots"),
            ("s3://192.168.1.1/x", "IP address"),
            ("s3://xn--abc/x", "reserves"),
            ("s3://abc-s3alias/x", "reserves"),
            ("s3://abc/x\ny", "control character"),
            ("s3://abc@evil.com/x", "lower-case"),
            ("s3://abc:80/x", "lower-case"),
        ] {
            let e = S3Path::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("s3://abc/{}", "k".repeat(1025));
        assert!(S3Path::parse(&long).unwrap_err().contains("1024 bytes"));
        assert!(S3Path::parse(&format!("s3://{}/k", "a".repeat(64))).is_err());
        assert!(S3Path::parse(&format!("s3://{}/k", "a".repeat(63))).is_ok());
    }
}
