-- Argo CD health check for aviary.dev Canaries. Install it under
-- resource.customizations.health.aviary.dev_Canary in argocd-cm (see the README's GitOps section).
-- Argo CD runs this chunk with the live object in `obj` and reads the table it returns.

local function condition(status, kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function said(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local function health(canary)
  local status = canary.status
  if status == nil then
    return "Progressing", "the controller has not looked at this Canary yet"
  end
  local generation = canary.metadata and canary.metadata.generation
  if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
    return "Progressing", "the controller has not acted on the latest spec yet"
  end
  local phase = status.phase or "Initializing"
  local stalled = condition(status, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return "Degraded", said(stalled, phase)
  end
  if status.pausedBy ~= nil then
    return "Suspended", "paused by " .. status.pausedBy
  end
  if phase == "Waiting" or phase == "WaitingPromotion" then
    return "Suspended", "waiting at a gate (" .. phase .. ")"
  end
  local reconciling = condition(status, "Reconciling")
  if status.effectsPending or (reconciling ~= nil and reconciling.status == "True") then
    return "Progressing", said(reconciling, phase)
  end
  -- Statuses written before these conditions existed carry only the phase.
  if phase == "Failed" then
    return "Degraded", "the rollout failed and was rolled back"
  end
  local ready = condition(status, "Ready")
  if ready ~= nil and ready.status == "True" then
    return "Healthy", said(ready, phase)
  end
  if ready == nil and (phase == "Succeeded" or phase == "Initialized" or phase == "Terminated") then
    return "Healthy", phase
  end
  return "Progressing", said(ready, phase)
end

local state, message = health(obj)
return { status = state, message = message }
