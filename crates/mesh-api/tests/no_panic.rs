//! Nothing panics on input: random bytes, random YAML-ish text, and mutations of valid resources all
//! come back as findings. (Property tests; the shrinking input is printed if one ever fails.)

use mesh_api::resource::load_str;
use proptest::prelude::*;

const SEED_DOCS: &[&str] = &[
    include_str!("fixtures/valid/virtual-service.yaml"),
    include_str!("fixtures/valid/destination-rule.yaml"),
    include_str!("fixtures/valid/gateway.yaml"),
    include_str!("fixtures/valid/service-entry.yaml"),
];

fn check(source: &str) {
    let loaded = load_str(source, None);
    for r in &loaded.resources {
        let _ = mesh_api::validate::validate(r);
    }
    let _ = mesh_api::analyze::analyze(&loaded.resources, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,400}") {
        check(&source);
    }

    #[test]
    fn yaml_shaped_text_never_panics(source in "([a-zA-Z:\\-\\[\\]{},&*!|>'\" \\n#0-9.]){0,300}") {
        check(&source);
    }

    #[test]
    fn mutated_resources_never_panic(doc in 0..SEED_DOCS.len(), at in any::<prop::sample::Index>(), cut in 0usize..40, insert in "[a-z:\\-\\[\\]{}\\n 0-9*&]{0,8}") {
        let src = SEED_DOCS[doc];
        let mut pos = at.index(src.len() + 1);
        while !src.is_char_boundary(pos) { pos -= 1; }
        let mut end = (pos + cut).min(src.len());
        while !src.is_char_boundary(end) { end -= 1; }
        let mutated = format!("{}{}{}", &src[..pos], insert, &src[end..]);
        check(&mutated);
    }
}
