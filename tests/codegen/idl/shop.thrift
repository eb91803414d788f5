// The codegen fixture: every binding source, optional and list fields, enums, nested
// validation, typedefs, auth, token issuing, exceptions, and two services.
include "common.thrift"

namespace rs shop

struct Address {
    1: required string city (api.vd = "len($) > 0"),
    2: optional string zip (api.vd = "regexp('^[0-9]{5}$')"),
}

struct SearchRequest {
    1: required string q (api.query = "q", api.vd = "mblen($) >= 2"),
    2: optional i32 page (api.query = "page", api.vd = "$ >= 1 && $ <= 100"),
    3: optional list<i64> tags (api.query = "tag"),
    4: required string tenant (api.header = "X-Tenant"),
    5: optional common.Currency currency (api.query = "currency"),
    6: optional bool in_stock (api.query = "in_stock"),
    7: optional common.Sku sku (api.query = "sku"),
    8: optional list<common.Currency> currencies (api.query = "cur"),
}

struct Item {
    1: required common.Sku sku,
    2: required string name,
    3: required double price,
}

struct SearchResponse {
    1: required list<Item> items,
    2: optional i32 total,
    255: required common.BaseResp base_resp,
}

struct OrderRequest {
    1: required i64 shop_id (api.path = "shop_id", api.vd = "$ > 0"),
    2: required list<string> skus (api.body = "skus", api.vd = "len($) > 0 && len($) <= 10"),
    3: required Address ship_to (api.body = "ship_to"),
    4: optional string note (api.body = "note", api.vd = "len($) <= 140 || (coupon)$ == 'VIP'"),
    5: optional string coupon (api.vd = "in($, 'WELCOME', 'VIP')"),
    // Fallback addresses, each checked like ship_to.
    6: optional list<Address> alternates (api.body = "alternates"),
    // Saved addresses by label, each checked like ship_to.
    7: optional map<string, Address> by_label (api.body = "by_label"),
}

struct OrderResponse {
    1: optional i64 order_id,
    255: required common.BaseResp base_resp,
}

exception OutOfStock {
    1: required string sku,
}

struct TrackRequest {
    1: required common.OrderNo order_no (api.path = "order_no"),
}

struct LoginRequest {
    1: required string user (api.body = "user"),
}

struct LoginResponse {
    1: required string account,
}

service ShopService {
    // Finds items.
    SearchResponse Search(1: SearchRequest req) (api.get = "/shops/search")
    // Places an order.
    OrderResponse Order(1: OrderRequest req) throws (1: OutOfStock out_of_stock) (api.post = "/shops/:shop_id/orders", api.put = "/shops/:shop_id/orders/retry", api.auth = "true")
    // An order's state, by its number (a typedef) in the path.
    OrderResponse Track(1: TrackRequest req) (api.get = "/orders/:order_no")
    // Not routed: only reachable over Thrift.
    void Ping()
} (registry.name = "shop.service")

service AccountService {
    LoginResponse Login(1: LoginRequest req) (api.post = "/accounts/login", api.issue_token = "account")
}
