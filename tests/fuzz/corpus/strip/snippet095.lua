f()
::top::
goto top
