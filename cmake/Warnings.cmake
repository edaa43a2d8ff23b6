# The warning set (docs/style.md, "Warnings"). Errors only with JITRCA_WERROR=ON (./test.sh and CI):
# a user's newer compiler that adds a warning must not stop their build; ours stays at zero
# (tests/build/release.sh).
set(JITRCA_WARN -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wstrict-prototypes -Wmissing-prototypes -Wmissing-declarations -Wold-style-definition
    -Wwrite-strings -Wpointer-arith -Wcast-qual -Wundef -Wvla -Wformat=2 -Wformat-security
    -Wnull-dereference -Wdouble-promotion -Wfloat-equal -Wredundant-decls -Wnested-externs
    -Wimplicit-fallthrough)
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  list(APPEND JITRCA_WARN -Wjump-misses-init -Wlogical-op -Wduplicated-cond
       -Wduplicated-branches -Wrestrict -Wformat-overflow=2)
elseif(CMAKE_C_COMPILER_ID MATCHES "Clang")
  list(APPEND JITRCA_WARN -Wcomma -Wshorten-64-to-32 -Wconditional-uninitialized
       -Wmissing-variable-declarations)
endif()
if(JITRCA_WERROR)
  list(APPEND JITRCA_WARN -Werror)
endif()
add_compile_options(${JITRCA_WARN} -fstack-protector-strong)

# A module library: one directory, one static library, its allowed dependencies.
function(jitrca_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${M_SOURCES})
  target_link_libraries(${name} PUBLIC ${M_DEPS})
endfunction()
