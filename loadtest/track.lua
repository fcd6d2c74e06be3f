-- wrk script: POST a ~600-byte track call, as analytics.js sends it, with a
-- fresh messageId each time so the collector's dedup window does not drop it.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic d2s6" -- write key "wk"
local n = 0
local body = [[{"type":"track","event":"Product Viewed","userId":"user-1234567","anonymousId":"0f8e3c1a-5b2d-4e7f-9a6c-1d2e3f4a5b6c",]] ..
  [["properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","category":"Games","name":"Monopoly: 3rd Edition","price":18.99,"quantity":1,"currency":"USD"},]] ..
  [["context":{"library":{"name":"analytics.js","version":"next-1.81.0"},"page":{"path":"/products/g-32","referrer":"https://www.example.com/","title":"Monopoly","url":"https://shop.example.com/products/g-32"},]] ..
  [["userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36","locale":"en-US"},]] ..
  [["timestamp":"2026-11-26T10:00:00.000Z","sentAt":"2026-11-26T10:00:00.050Z","messageId":"]]
-- Each wrk thread has its own Lua state; setup numbers them so their
-- messageIds differ.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local prefix
function init(args)
  prefix = tostring(tid) .. "-" .. tostring(os.time())
end
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, body .. prefix .. "-" .. n .. [["}]])
end
