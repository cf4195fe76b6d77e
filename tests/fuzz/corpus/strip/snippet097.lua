local x: T
::done::
