-- wrk script: POST search requests whose bodies are read, one per line,
-- from the file in env BODIES (JSON) or sends the raw file in env IMAGE
-- (an image upload). Each wrk thread cycles through the bodies.
local bodies = {}
local counter = 0
local image = nil

function init(args)
  local path = os.getenv("BODIES")
  if path then
    for line in io.lines(path) do bodies[#bodies + 1] = line end
  end
  local img = os.getenv("IMAGE")
  if img then
    local f = assert(io.open(img, "rb"))
    image = f:read("*a")
    f:close()
  end
  counter = math.random(1, 100000)
end

function request()
  counter = counter + 1
  if image then
    return wrk.format("POST", wrk.path, { ["Content-Type"] = "image/jpeg" }, image)
  end
  local body = bodies[(counter % #bodies) + 1]
  return wrk.format("POST", wrk.path, { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    wrk.thread:stop()
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
