//! Micro-benchmarks of the per-service work of a scan, so that regressions show up as
//! numbers: normalising an image reference, and decoding and judging a page of 3000
//! services as Rancher sends it. Run with `cargo bench --bench parsing`.

use std::hint::black_box;

use autoredeploy::config::MatchSettings;
use autoredeploy::domain::ImageRef;
use autoredeploy::platform::rancher::ServicePage;
use autoredeploy::platform::rancher::matching;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

/// A page of `count` services made from the service fixture, every hundredth running the
/// pushed image, in the collection envelope Rancher sends.
fn page(count: usize) -> Vec<u8> {
    let template: Value =
        serde_json::from_str(include_str!("../fixtures/rancher/service.json")).unwrap();
    let data: Vec<Value> = (0..count)
        .map(|i| {
            let mut service = template.clone();
            service["id"] = json!(format!("1s{}", i + 1));
            service["name"] = json!(format!("svc-{i:05}"));
            service["launchConfig"]["imageUuid"] = if i % 100 == 50 {
                json!("docker:myorg/web:latest")
            } else {
                json!(format!("docker:myorg/other-{}:latest", i % 13))
            };
            service
        })
        .collect();
    serde_json::to_vec(&json!({
        "type": "collection",
        "resourceType": "service",
        "data": data,
        "pagination": { "next": "http://rancher/v1/services?limit=3000&marker=m3000", "limit": 3000, "partial": true },
    }))
    .unwrap()
}

fn normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("image reference");
    for spelling in [
        "nginx",
        "myorg/web:1.4",
        "docker.io/library/nginx:latest",
        "registry.example.com:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        group.bench_function(spelling, |b| {
            b.iter(|| ImageRef::parse(black_box(spelling)).unwrap())
        });
    }
    group.bench_function("rancher imageUuid", |b| {
        b.iter(|| {
            autoredeploy::platform::rancher::matching::image_of_uuid(black_box(
                "docker:myorg/web:latest",
            ))
            .unwrap()
        })
    });
    group.finish();
}

fn page_of_3000(c: &mut Criterion) {
    let body = page(3000);
    let pushed = ImageRef::parse("myorg/web:latest").unwrap();
    let rule = MatchSettings {
        default_opt_in: true,
        label_name: "tech.manas.service.autoredeploy".into(),
    };
    let mut group = c.benchmark_group("page of 3000 services");
    group.throughput(Throughput::Elements(3000));
    group.sample_size(20);
    group.bench_function("decode", |b| {
        b.iter(|| ServicePage::decode(black_box(&body)).unwrap())
    });
    group.bench_function("decode and judge", |b| {
        b.iter(|| {
            let page = ServicePage::decode(black_box(&body)).unwrap();
            page.services
                .iter()
                .filter(|service| {
                    matches!(
                        matching::judge(service, &pushed, &rule),
                        matching::Verdict::Upgrade(_)
                    )
                })
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, normalisation, page_of_3000);
criterion_main!(benches);
