-- wrk script: POST query vectors as little-endian f32
-- (application/x-imgsim-f32le), PER vectors of DIM values per request, cut
-- in order from the file in env VECTORS (n x DIM f32, no header). Each wrk
-- thread cycles through the file from a random start.
local data = nil
local dim, per, count = 0, 1, 0
local counter = 0

function init(args)
  dim = tonumber(os.getenv("DIM"))
  per = tonumber(os.getenv("PER") or "1")
  local f = assert(io.open(assert(os.getenv("VECTORS")), "rb"))
  data = f:read("*a")
  f:close()
  count = math.floor(#data / (4 * dim * per))
  counter = math.random(1, 100000)
end

function request()
  counter = counter + 1
  local size = 4 * dim * per
  local start = (counter % count) * size
  local body = string.sub(data, start + 1, start + size)
  return wrk.format("POST", wrk.path, { ["Content-Type"] = "application/x-imgsim-f32le" }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    wrk.thread:stop()
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
