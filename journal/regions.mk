# Region map parser (owner: lead).
$(B)/libregions.a: $(call objs,journal/regions.c)
$(B)/tests/test-regions: $(B)/libregions.a $(B)/libstore.a $(B)/libbase.a
UNIT_TESTS += $(B)/tests/test-regions
