//! The generated `Validate`: `api.vd` rules compiled to Rust, run on real values.

use codegen_tests::shop::{Address, OrderRequest, SearchRequest};
use idlgen_runtime::{Invalid, Validate};

fn search(q: &str, page: Option<i32>) -> SearchRequest {
    SearchRequest {
        q: pilota::FastStr::new(q),
        page,
        tenant: "acme".into(),
        ..Default::default()
    }
}

fn order() -> OrderRequest {
    OrderRequest {
        shop_id: 1,
        skus: vec!["a".into()],
        ship_to: Address {
            city: "Lyon".into(),
            zip: Some("69001".into()),
        },
        note: None,
        coupon: None,
        alternates: None,
        by_label: None,
    }
}

fn address(city: &str) -> Address {
    Address {
        city: pilota::FastStr::new(city),
        zip: None,
    }
}

fn broken(result: Result<(), Invalid>) -> (String, String) {
    let e = result.expect_err("the value breaks a rule");
    (e.field, e.message)
}

#[test]
fn valid_values_pass() {
    assert_eq!(search("shoes", Some(1)).validate(), Ok(()));
    assert_eq!(
        search("shoes", None).validate(),
        Ok(()),
        "an absent optional field is not validated"
    );
    assert_eq!(order().validate(), Ok(()));
}

#[test]
fn mblen_counts_characters_not_bytes() {
    assert_eq!(
        search("éé", None).validate(),
        Ok(()),
        "two characters, four bytes"
    );
    assert_eq!(
        broken(search("é", None).validate()),
        ("q".into(), "must satisfy `mblen($) >= 2`".into())
    );
}

#[test]
fn numeric_bounds() {
    assert_eq!(broken(search("ab", Some(0)).validate()).0, "page");
    assert_eq!(broken(search("ab", Some(101)).validate()).0, "page");
    assert_eq!(
        broken(
            OrderRequest {
                shop_id: 0,
                ..order()
            }
            .validate()
        )
        .0,
        "shop_id"
    );
}

#[test]
fn list_length() {
    assert_eq!(
        broken(
            OrderRequest {
                skus: vec![],
                ..order()
            }
            .validate()
        )
        .0,
        "skus"
    );
    let eleven = (0..11).map(|i| i.to_string().into()).collect();
    assert_eq!(
        broken(
            OrderRequest {
                skus: eleven,
                ..order()
            }
            .validate()
        )
        .0,
        "skus"
    );
}

#[test]
fn in_and_sibling_references() {
    assert_eq!(
        OrderRequest {
            coupon: Some("VIP".into()),
            ..order()
        }
        .validate(),
        Ok(())
    );
    assert_eq!(
        broken(
            OrderRequest {
                coupon: Some("FREE".into()),
                ..order()
            }
            .validate()
        )
        .0,
        "coupon"
    );

    let long = "x".repeat(141);
    let plain = OrderRequest {
        note: Some(long.clone().into()),
        ..order()
    };
    assert_eq!(broken(plain.validate()).0, "note");
    let vip = OrderRequest {
        note: Some(long.into()),
        coupon: Some("VIP".into()),
        ..order()
    };
    assert_eq!(
        vip.validate(),
        Ok(()),
        "`|| (coupon)$ == 'VIP'` lets VIP notes be long"
    );
}

#[test]
fn nested_structs_are_validated_with_their_path() {
    let no_city = OrderRequest {
        ship_to: Address {
            city: "".into(),
            zip: None,
        },
        ..order()
    };
    assert_eq!(
        broken(no_city.validate()),
        ("ship_to.city".into(), "must satisfy `len($) > 0`".into())
    );
    let bad_zip = OrderRequest {
        ship_to: Address {
            city: "Lyon".into(),
            zip: Some("6900".into()),
        },
        ..order()
    };
    assert_eq!(broken(bad_zip.validate()).0, "ship_to.zip");
}

#[test]
fn the_error_reads_well() {
    let e = search("a", None).validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid field `q`: must satisfy `mblen($) >= 2`"
    );
}

#[test]
fn structs_in_lists_and_maps_are_validated_and_named_by_place() {
    let alternates = OrderRequest {
        alternates: Some(vec![address("Nice"), address("")]),
        ..order()
    };
    assert_eq!(
        broken(alternates.validate()),
        (
            "alternates[1].city".into(),
            "must satisfy `len($) > 0`".into()
        )
    );
    let by_label = OrderRequest {
        by_label: Some([("home".into(), address(""))].into_iter().collect()),
        ..order()
    };
    assert_eq!(broken(by_label.validate()).0, "by_label[\"home\"].city");
    let fine = OrderRequest {
        alternates: Some(vec![address("Nice")]),
        by_label: Some([("home".into(), address("Lyon"))].into_iter().collect()),
        ..order()
    };
    assert_eq!(fine.validate(), Ok(()));
}
