# CUDA emulation: a .cu file as C++ for the emulator. kernel<<<grid, block, smem, stream>>>(args) becomes a call
# of zf_emu::make_launch(kernel, "kernel", zf_emu::launch_config(grid, block, smem, stream))(args); lines are kept,
# and #line names the original file. Usage: cmake -DIN=x.cu -DOUT=x.cc -P launch_rewrite.cmake
file(READ "${IN}" src)
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_]*(<[A-Za-z0-9_ ]+>)?)<<<"
       "zf_emu::make_launch(\\1, \"\\1\", zf_emu::launch_config(" src "${src}")
string(REPLACE ">>>(" "))(" src "${src}")
if(src MATCHES "<<<|>>>")
  message(FATAL_ERROR "${IN}: a kernel launch the emulator cannot rewrite (write it as name<<<config>>>(args))")
endif()
file(WRITE "${OUT}" "#line 1 \"${IN}\"\n${src}")
