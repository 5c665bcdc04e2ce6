# Writes the text of a schema into a header as a raw string, so that `inspect --json`
# can print every field of a plan with FlatBuffers' own text generator.
file(READ ${IN} content)
get_filename_component(stem ${IN} NAME_WE)
file(WRITE ${OUT} "// Generated from ${stem}.fbs by schemas/embed_text.cmake. Do not edit.\n#pragma once\nnamespace fp::schemas {\ninline constexpr const char ${stem}_fbs_text[] = R\"FBS(${content})FBS\";\n}\n")
