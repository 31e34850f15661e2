-- Argo CD health check for sae.ops.dev/SaeInstanceDeletion.
--
-- Succeeded and Failed are final: the controller never acts on the object again, so they map to
-- Healthy and Degraded whatever else the status says. Every other phase, and an object the
-- controller has not written a status for yet, is Progressing.
-- The reason comes from the conditions (every condition carries the current one).

local hs = {}

local function current_reason(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.reason ~= nil and condition.reason ~= "" then
      return condition.reason
    end
  end
  return nil
end

local function describe(status, fallback)
  local reason = current_reason(status)
  local message = status.message
  if message == nil or message == "" then
    message = fallback
  end
  if reason ~= nil then
    return reason .. ": " .. message
  end
  return message
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to pick up the deletion"
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(status, "Instances deleted")
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(status, "Deletion failed")
  return hs
end

local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

-- Pending, Submitting, Retrying, InProgress, and any phase a newer controller may add.
hs.status = "Progressing"
hs.message = phase .. ": " .. describe(status, "deletion under way")
return hs
