-- The request id of the call that registered the user (the gateway's x-request-id, sent as
-- the REQUEST_ID metainfo value). A registration retried after its answer was lost with a
-- dead connection finds its own row by it, and succeeds again instead of reading "taken".
ALTER TABLE users ADD COLUMN request_id TEXT;
