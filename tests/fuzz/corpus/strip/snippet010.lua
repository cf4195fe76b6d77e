type Stats = {
    messages: number,
    workers_spawned: number,
}
local stats = { messages = 0 }
