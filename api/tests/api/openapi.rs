//! `GET /openapi.json` describes exactly the routes the router serves.

use crate::helpers::spawn_app;

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

#[tokio::test]
async fn every_documented_route_is_served_and_every_other_method_on_its_path_is_405() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().expect("paths");

    let mut documented: Vec<String> = Vec::new();
    for (path, item) in paths {
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
        for method in METHODS {
            let in_doc = item.get(*method).is_some();
            if in_doc {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete));
            let response = request
                .query(&[("name", "probe.txt")])
                .body("x")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            // HEAD is answered by every GET route (axum), so it is neither in nor out.
            if *method == "head" {
                continue;
            }
            if in_doc {
                assert!(
                    status != 405 && !body.contains("no such route"),
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
    documented.sort();
    // The router's routes, as registered in api/src/routes/mod.rs.
    let mut served = vec![
        "GET /healthz",
        "GET /readyz",
        "GET /instance",
        "GET /documents",
        "POST /documents",
        "GET /documents/{id}",
        "DELETE /documents/{id}",
        "GET /documents/{id}/content",
        "GET /documents/{id}/labels",
        "PUT /documents/{id}/labels",
        "GET /labels/{label}/documents",
        "GET /openapi.json",
        "GET /metrics",
    ];
    served.sort();
    assert_eq!(documented, served);
    // Something that is no route is not documented either, and gets the JSON 404.
    assert!(!paths.contains_key("/nothing"));
    assert_eq!(app.get("/nothing").await.status(), 404);
}
