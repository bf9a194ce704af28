//! Path normalisation: the normalised path is matched and forwarded.

use crate::clients::*;
use crate::support::*;

#[tokio::test]
async fn the_normalised_path_is_matched_and_forwarded() {
    let b = echo([127, 0, 0, 1], "b").await;
    let api = echo([127, 0, 0, 1], "api").await;
    let x = echo([127, 0, 0, 1], "x").await;
    let h = Harness::start(&[
        (
            "web.yaml",
            ingress(
                "web",
                "web.test",
                &[
                    ("/b", "Exact", "b", 80),
                    ("/Api", "Prefix", "api", 80),
                    ("/x", "Exact", "x", 80),
                ],
                &[],
            ),
        ),
        (
            "svc.yaml",
            services(&[
                service("b", &[(b, true)]),
                service("api", &[(api, true)]),
                service("x", &[(x, true)]),
            ]),
        ),
    ])
    .await;
    for (target, svc, forwarded) in [
        ("/a/../b", "b", "/b"),
        ("/a/./../b", "b", "/b"),
        ("/%2e%2E/b", "b", "/b"),
        ("/../../b", "b", "/b"),
        ("/%41pi", "api", "/Api"),
        ("/%41pi/caf%c3%a9", "api", "/Api/caf%C3%A9"),
        ("//x", "x", "/x"),
        ("///x", "x", "/x"),
        ("/a/../b?q=1&r=%2F..&s=/../", "b", "/b?q=1&r=%2F..&s=/../"),
        ("//x?y=%41", "x", "/x?y=%41"),
    ] {
        let (status, raw) = raw_get(h.running.http_addr, "web.test", target).await;
        assert_eq!(status, 200, "{target}: {raw}");
        let body = raw_body(&raw);
        assert_eq!(echo_service(body), svc, "{target}: {body}");
        assert_eq!(
            echo_request_line(body),
            format!("GET {forwarded} HTTP/1.1"),
            "{target}"
        );
    }
    // `/api` does not match the case-sensitive `/Api` once normalised differently.
    let (status, _) = raw_get(h.running.http_addr, "web.test", "/%61pi").await;
    assert_eq!(status, 404);
}
