-- Extend the lease KEYS[1] by ARGV[2] ms, only if this holder (token ARGV[1]) still owns it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
