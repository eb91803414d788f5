// Shared by the shop fixture: a status struct and an enum, from another file.
namespace rs shop.common

enum Currency {
    EUR = 1,
    USD = 2,
}

struct BaseResp {
    1: required i64 status_code,
    2: required string status_message,
}

typedef string Sku
typedef i64 OrderNo
