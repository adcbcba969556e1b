-- Orthanc: send every CT series to the AdiposeSeg node once it is stable (no new instance for
-- Orthanc's StableAge seconds). "adiposeseg" is the node's entry in DicomModalities. The SEG and
-- SR that come back are series of other modalities, so they are not routed again.
-- (Lua's SendToModality(seriesId, ...) fails on a series id in Orthanc 1.10; the REST call is a job.)
function OnStableSeries(seriesId, tags, metadata)
   if tags['Modality'] == 'CT' then
      RestApiPost('/modalities/adiposeseg/store',
                  '{"Resources": ["' .. seriesId .. '"], "Asynchronous": true}', false)
   end
end
