//! A minimal DER reader for the few X.509 fields sluice needs: the raw issuer and subject names
//! (to check the order of a certificate chain) and the validity period (for the expiry warning
//! and the `sluice_tls_certs_not_after` metric).
//!
//! It never panics and never indexes out of bounds: every malformed input is a [`DerError`].
//! It checks the structure only as far as it reads it; signatures and extensions are left to
//! rustls and the clients.

/// Why a certificate could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The data ends before an element it announces.
    #[error("truncated DER data")]
    Truncated,
    /// A length uses the indefinite form or more than four bytes.
    #[error("unsupported DER length encoding")]
    BadLength,
    /// An element has another type than the X.509 structure requires there.
    #[error("expected {expected}, found tag {found:#04x}")]
    UnexpectedTag {
        /// What the X.509 structure requires at this place.
        expected: &'static str,
        /// The tag byte found instead.
        found: u8,
    },
    /// Bytes follow the certificate.
    #[error("trailing data after the certificate")]
    TrailingData,
    /// A UTCTime or GeneralizedTime is not of the form RFC 5280 requires (`YYMMDDHHMMSSZ` or
    /// `YYYYMMDDHHMMSSZ`) or names an impossible date.
    #[error("invalid validity time")]
    BadTime,
}

/// The fields of one certificate that sluice reads, borrowed from its DER encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertFields<'a> {
    /// The issuer Name, whole DER element (tag, length and contents).
    pub issuer: &'a [u8],
    /// The subject Name, whole DER element (tag, length and contents).
    pub subject: &'a [u8],
    /// `validity.notBefore`, in seconds since the Unix epoch.
    pub not_before: i64,
    /// `validity.notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_0: u8 = 0xa0;

/// Reads the issuer, subject and validity of a DER-encoded X.509 certificate.
pub fn parse_certificate(der: &[u8]) -> Result<CertFields<'_>, DerError> {
    let mut outer = Reader::new(der);
    let cert = outer.expect(SEQUENCE, "Certificate SEQUENCE")?;
    if !outer.is_empty() {
        return Err(DerError::TrailingData);
    }
    let mut cert = Reader::new(cert.content);
    let tbs = cert.expect(SEQUENCE, "TBSCertificate SEQUENCE")?;
    cert.expect(SEQUENCE, "signatureAlgorithm SEQUENCE")?;
    cert.expect(BIT_STRING, "signatureValue BIT STRING")?;

    let mut tbs = Reader::new(tbs.content);
    if tbs.peek_tag() == Some(EXPLICIT_0) {
        tbs.read()?; // version
    }
    tbs.expect(INTEGER, "serialNumber INTEGER")?;
    tbs.expect(SEQUENCE, "signature AlgorithmIdentifier")?;
    let issuer = tbs.expect(SEQUENCE, "issuer Name")?.whole;
    let validity = tbs.expect(SEQUENCE, "validity SEQUENCE")?;
    let subject = tbs.expect(SEQUENCE, "subject Name")?.whole;
    tbs.expect(SEQUENCE, "subjectPublicKeyInfo SEQUENCE")?;

    let mut validity = Reader::new(validity.content);
    let not_before = read_time(&mut validity)?;
    let not_after = read_time(&mut validity)?;
    Ok(CertFields {
        issuer,
        subject,
        not_before,
        not_after,
    })
}

/// One element: its tag, its contents, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    fn read(&mut self) -> Result<Tlv<'a>, DerError> {
        let data = self.data;
        let (&tag, rest) = data.split_first().ok_or(DerError::Truncated)?;
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            let (bytes, after) = rest.split_at_checked(n).ok_or(DerError::Truncated)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let header = data.len() - rest.len();
        let total = header.checked_add(len).ok_or(DerError::Truncated)?;
        let (whole, after) = data.split_at_checked(total).ok_or(DerError::Truncated)?;
        let content = whole.get(header..).ok_or(DerError::Truncated)?;
        self.data = after;
        Ok(Tlv {
            tag,
            content,
            whole,
        })
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let tlv = self.read()?;
        if tlv.tag != tag {
            return Err(DerError::UnexpectedTag {
                expected: what,
                found: tlv.tag,
            });
        }
        Ok(tlv)
    }
}

fn read_time(r: &mut Reader<'_>) -> Result<i64, DerError> {
    let tlv = r.read()?;
    let s = tlv.content;
    let (year, rest) = match tlv.tag {
        UTC_TIME => {
            let (yy, rest) = s.split_at_checked(2).ok_or(DerError::BadTime)?;
            let yy = digits(yy)?;
            // RFC 5280 4.1.2.5.1: YY >= 50 is 19YY, otherwise 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        GENERALIZED_TIME => {
            let (yyyy, rest) = s.split_at_checked(4).ok_or(DerError::BadTime)?;
            (digits(yyyy)?, rest)
        }
        found => {
            return Err(DerError::UnexpectedTag {
                expected: "UTCTime or GeneralizedTime",
                found,
            });
        }
    };
    // MMDDHHMMSSZ
    let [m1, m2, d1, d2, h1, h2, n1, n2, s1, s2, b'Z'] = rest else {
        return Err(DerError::BadTime);
    };
    let month = digits(&[*m1, *m2])?;
    let day = digits(&[*d1, *d2])?;
    let hour = digits(&[*h1, *h2])?;
    let minute = digits(&[*n1, *n2])?;
    let second = digits(&[*s1, *s2])?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(DerError::BadTime);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(s: &[u8]) -> Result<i64, DerError> {
    s.iter().try_fold(0i64, |acc, c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + i64::from(c - b'0'))
        } else {
            Err(DerError::BadTime)
        }
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix seconds as RFC 3339 UTC (`2030-06-15T00:00:00Z`), for messages.
pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_validity_utc_and_generalized() {
        let der = cert((2020, 1, 1), (2030, 6, 15));
        let f = parse_certificate(&der).unwrap();
        assert_eq!(f.not_before, 1_577_836_800);
        assert_eq!(f.not_after, 1_907_712_000);
        assert_eq!(f.issuer, f.subject, "self-signed");
        assert_eq!(f.issuer.first(), Some(&SEQUENCE));

        // Years from 2050 on are GeneralizedTime.
        let der = cert((1960, 2, 29), (2051, 3, 1));
        let f = parse_certificate(&der).unwrap();
        assert_eq!(f.not_after, 2_561_241_600);
        assert_eq!(f.not_before, days_from_civil(1960, 2, 29) * 86_400);
        assert!(f.not_before < 0);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let der = cert((2020, 1, 1), (2030, 6, 15));
        assert!(parse_certificate(&der).is_ok());
        for n in 0..der.len() {
            assert!(
                parse_certificate(&der[..n]).is_err(),
                "truncated to {n} bytes"
            );
        }
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(parse_certificate(&longer), Err(DerError::TrailingData));
        // Flipping any single byte must never panic (it may or may not still parse).
        for i in 0..der.len() {
            for x in [0x00, 0xff, 0x80, 0x84, 0x30] {
                let mut d = der.clone();
                d[i] = x;
                let _ = parse_certificate(&d);
            }
        }
        for garbage in [
            &b""[..],
            b"\x30",
            b"\x30\x80",
            b"\x30\x85\x01\x02\x03\x04\x05",
            b"\x30\x84\xff\xff\xff\xff",
            b"hello world",
        ] {
            assert!(parse_certificate(garbage).is_err());
        }
    }

    #[test]
    fn times() {
        let t = |tag: u8, s: &[u8]| {
            let mut v = vec![tag, s.len() as u8];
            v.extend_from_slice(s);
            read_time(&mut Reader::new(&v))
        };
        assert_eq!(t(UTC_TIME, b"700101000000Z"), Ok(0));
        assert_eq!(t(UTC_TIME, b"491231235959Z"), Ok(2_524_607_999));
        assert_eq!(t(GENERALIZED_TIME, b"20000229120000Z"), Ok(951_825_600));
        assert_eq!(
            t(GENERALIZED_TIME, b"20010229120000Z"),
            Err(DerError::BadTime)
        );
        assert_eq!(t(UTC_TIME, b"700101000000"), Err(DerError::BadTime));
        assert_eq!(t(UTC_TIME, b"701301000000Z"), Err(DerError::BadTime));
        assert_eq!(t(UTC_TIME, b"70010100000aZ"), Err(DerError::BadTime));
        assert_eq!(t(UTC_TIME, b"7001010000Z"), Err(DerError::BadTime));
        assert!(matches!(
            t(0x04, b"700101000000Z"),
            Err(DerError::UnexpectedTag { .. })
        ));
    }

    #[test]
    fn formats_unix_time() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_907_712_000), "2030-06-15T00:00:00Z");
        assert_eq!(format_unix(951_825_600 + 3661), "2000-02-29T13:01:01Z");
        assert_eq!(format_unix(-1), "1969-12-31T23:59:59Z");
        for d in [-800_000i64, -1, 0, 59, 11_016, 20_000, 100_000, 800_000] {
            let s = format_unix(d * 86_400);
            let (y, m, day) = (&s[0..4], &s[5..7], &s[8..10]);
            if let (Ok(y), Ok(m), Ok(day)) = (y.parse(), m.parse(), day.parse()) {
                assert_eq!(days_from_civil(y, m, day), d, "{s}");
            }
        }
    }
}
