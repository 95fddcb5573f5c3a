-- Give the lease KEYS[1] up, only if this holder (token ARGV[1]) still owns it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
