# Concatenates a directory's *.yaml files (sorted) into one multi-document stream:
# cmake -DOUT=file -DDIR=dir -P concat_yaml.cmake
file(GLOB files ${DIR}/*.yaml)
list(SORT files)
file(WRITE ${OUT} "")
foreach(f ${files})
  file(READ ${f} text)
  file(APPEND ${OUT} "---\n${text}\n")
endforeach()
